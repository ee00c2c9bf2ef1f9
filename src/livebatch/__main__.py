from livebatch.cli import main

main()

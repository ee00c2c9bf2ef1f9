// A question before a control that cannot be undone, as a modal <dialog> of the page whose buttons say what
// they do ("Keep running", "Cancel batch") instead of the browser's OK and Cancel. DOM only.
//
// The dialog's buttons close it with their `data-close` value; Escape closes it with none, which keeps the
// batch running. The browser moves the focus into the dialog (to the [autofocus] button, the safe one) and
// back to the control that opened it when it closes.

export function createConfirm(dialog) {
  for (const button of dialog.querySelectorAll("button[data-close]")) {
    button.addEventListener("click", () => dialog.close(button.dataset.close));
  }
  /** Resolves true when the user chose the button whose `data-close` is "confirm". */
  return function confirm() {
    return new Promise((resolve) => {
      dialog.returnValue = "";
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
      dialog.showModal();
    });
  };
}

// Shows server times (`<time datetime="..." data-local>`, rendered in UTC) in the reader's time zone.
for (const node of document.querySelectorAll("time[data-local]")) {
  const date = new Date(node.getAttribute("datetime"));
  if (!Number.isNaN(date.getTime())) {
    node.textContent = date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  }
}

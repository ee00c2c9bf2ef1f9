// Shows server times (`<time datetime="..." data-local>`, rendered in UTC) in the reader's time zone, in the
// one format of every page (format.js).
import { formatWhen } from "./format.js";

for (const node of document.querySelectorAll("time[data-local]")) {
  const words = formatWhen(node.getAttribute("datetime"));
  if (words) node.textContent = words;
}

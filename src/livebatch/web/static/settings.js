// The settings page: save the webhook URL (PUT /api/v1/me/webhook), show the signing secret the one time the
// API sends it, ask for a new secret, remove the webhook, send a delivery again. Text from the server is
// set as text, never markup.

const API = "/api/v1/me/webhook";
const root = document.querySelector("#webhook");
const form = document.querySelector("#webhook-form");
const field = (name) => document.querySelector(`[data-field="${name}"]`);

async function call(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const answer = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error((answer && answer.error && answer.error.message) || `The server answered ${response.status}.`);
  }
  return answer;
}

function say(name, words) {
  for (const other of ["webhook-error", "webhook-saved"]) field(other).hidden = true;
  const node = field(name);
  node.textContent = words;
  node.hidden = !words;
}

function showSecret(secret) {
  field("secret").textContent = secret;
  field("secret-box").hidden = false;
}

async function save(rotateSecret) {
  const url = form.elements.namedItem("url").value.trim();
  if (!url) {
    say("webhook-error", "Enter the URL to send notifications to.");
    return;
  }
  const answer = await call("PUT", API, { url, rotateSecret });
  root.dataset.hasWebhook = "true";
  for (const button of document.querySelectorAll("[data-webhook]")) button.hidden = false;
  if (answer && answer.secret) showSecret(answer.secret);
  say("webhook-saved", rotateSecret ? "Saved, with a new secret." : "Saved.");
}

async function guarded(work) {
  try {
    await work();
  } catch (error) {
    say("webhook-error", error instanceof Error ? error.message : String(error));
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(() => save(false));
});

document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target : null;
  const action = target && target.closest("[data-webhook]");
  if (action && action.dataset.webhook === "rotate") {
    if (window.confirm("Make a new secret? Deliveries are signed with it from now on; the old one stops working.")) {
      guarded(() => save(true));
    }
  } else if (action && action.dataset.webhook === "remove") {
    if (window.confirm("Remove the webhook? Deliveries still due will not be sent.")) {
      guarded(async () => {
        await call("DELETE", API);
        location.reload();
      });
    }
  }
  const again = target && target.closest("[data-redeliver]");
  if (again) {
    again.disabled = true;
    guarded(async () => {
      await call("POST", `${API}/deliveries/${encodeURIComponent(again.dataset.redeliver)}/redeliver`);
      location.reload();
    }).finally(() => {
      again.disabled = false; // refused: the error says why, and it may be tried again
    });
  }
});

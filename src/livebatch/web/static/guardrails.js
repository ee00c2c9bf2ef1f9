// The progress page's parts for issue 13, beside render.js: what the batch used and cost (two facts of the
// summary card), why it paused itself and how to go on (a notice under the card's own), and a form to raise a
// budget it spent. Like render.js it only touches the document, and sets everything as text. The words come
// from figures.js; whether the batch is paused, and why, from the server (the batch API's pauseReason).

import { costText, pauseText, raisedBudget, tokensText } from "./figures.js";

export function createGuardrails(root, handlers) {
  const field = (name) => root.querySelector(`[data-field="${name}"]`);
  const el = {
    tokensFact: field("tokens-fact"),
    tokens: field("tokens"),
    costFact: field("cost-fact"),
    cost: field("cost"),
    guard: field("guard"),
    guardText: field("guard-text"),
    form: field("budget-form"),
    costField: field("budget-cost-field"),
    currency: field("budget-currency"),
    tokensField: field("budget-tokens-field"),
    error: field("budget-error"),
  };
  const inputs = { cost: el.form.elements.namedItem("cost"), tokens: el.form.elements.namedItem("tokens") };
  const submit = el.form.querySelector('button[type="submit"]');
  let offering = false; // the form is shown, and its fields hold what the person may be editing

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { cost: null, tokens: null };
    for (const name of ["cost", "tokens"]) {
      const input = inputs[name];
      if (input.closest("label").hidden) continue;
      const value = Number(input.value);
      const ok = input.value !== "" && Number.isFinite(value) && value > 0 && (name === "cost" || Number.isInteger(value));
      input.setAttribute("aria-invalid", String(!ok));
      if (!ok) return showError(name === "cost" ? "Enter a cost above 0." : "Enter a whole number of tokens.");
      body[name] = value;
    }
    showError(null);
    handlers.onBudget(body);
  });

  function render(state) {
    const { batch, snapshot } = state;
    if (batch === null) return;
    const tokens = tokensText(snapshot);
    show(el.tokensFact, tokens !== "");
    text(el.tokens, tokens);
    const cost = costText(snapshot);
    show(el.costFact, cost !== "");
    text(el.cost, cost);

    const words = pauseText(batch, snapshot);
    show(el.guard, words !== "");
    text(el.guardText, words);
    const budget = batch.config && batch.config.budget;
    const spent = !batch.guards || batch.guards.budgetReached !== false;
    const raising = batch.status === "paused" && batch.pauseReason === "budget_reached" && Boolean(budget) && spent;
    show(el.form, raising);
    if (raising && !offering) {
      // Filled when the form appears, never while it is shown: the person may be typing in it.
      const offer = raisedBudget(budget, snapshot);
      show(el.costField, offer.cost !== null);
      show(el.tokensField, offer.tokens !== null);
      inputs.cost.value = offer.cost === null ? "" : String(offer.cost);
      inputs.tokens.value = offer.tokens === null ? "" : String(offer.tokens);
      text(el.currency, (snapshot && snapshot.currency) || "USD");
      showError(null);
    }
    offering = raising;
  }

  function showError(message) {
    show(el.error, Boolean(message));
    text(el.error, message || "");
  }

  return {
    render,
    showError,
    setBusy(busy) {
      submit.disabled = busy;
      submit.setAttribute("aria-busy", String(busy));
    },
  };
}

function text(node, words) {
  if (node && node.textContent !== words) node.textContent = words;
}

function show(node, visible) {
  if (node && node.hidden === visible) node.hidden = !visible;
}

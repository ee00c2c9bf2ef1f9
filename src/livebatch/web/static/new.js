// The new-batch form: a live check that the difficulty mix sums to 100, then a POST to the API and on
// to the new batch's progress page. The server checks everything again; its message is shown as is.

const form = document.querySelector("#new-batch");
if (form) {
  const total = form.querySelector("#mix-total");
  const submit = form.querySelector("#start");
  const problem = form.querySelector("#form-error");
  const mixInputs = ["easy", "medium", "hard"].map((name) => form.elements.namedItem(name));

  const mixSum = () => mixInputs.reduce((sum, input) => sum + (Number.parseInt(input.value, 10) || 0), 0);

  function checkMix() {
    const sum = mixSum();
    const valid = sum === 100 && mixInputs.every((input) => input.checkValidity());
    total.textContent = valid ? "Total: 100%" : `Total: ${sum}%. The mix must add up to 100%.`;
    total.dataset.valid = String(valid);
    for (const input of mixInputs) input.setAttribute("aria-invalid", String(!valid));
    submit.disabled = !valid;
    return valid;
  }

  function showProblem(message) {
    problem.hidden = !message;
    problem.textContent = message || "";
  }

  form.addEventListener("input", checkMix);
  checkMix();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showProblem(null);
    if (!checkMix()) return;
    const count = form.elements.namedItem("targetCount");
    if (!count.checkValidity()) {
      showProblem(`Number of items: ${count.validationMessage}`);
      count.focus();
      return;
    }
    const body = {
      courseId: form.elements.namedItem("courseId").value,
      targetCount: Number.parseInt(count.value, 10),
      questionType: form.elements.namedItem("questionType").value,
      difficultyDistribution: Object.fromEntries(mixInputs.map((input) => [input.name, Number.parseInt(input.value, 10)])),
    };
    submit.disabled = true;
    submit.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(form.action, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        credentials: "same-origin",
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => null);
      if (response.ok && answer && answer.id) {
        location.assign(`/faculty/generate/batch/${encodeURIComponent(answer.id)}`);
        return;
      }
      showProblem((answer && answer.error && answer.error.message) || `The server answered ${response.status}.`);
    } catch {
      showProblem("Could not reach the server; try again in a moment.");
    } finally {
      submit.removeAttribute("aria-busy");
      checkMix();
    }
  });
}

/* The campaign form's live audience: while staff edit, post the form (debounced) to the
   audience view and show, under each rule, how many customers it matches, takes and may send
   to now — or why it reaches nobody. A static file: the content security policy allows no
   inline script. */
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  function number(n) { return Number(n).toLocaleString("en"); }

  function line(parent, text, className) {
    var el = document.createElement("div");
    el.textContent = text;
    if (className) { el.className = className; }
    parent.appendChild(el);
    return el;
  }

  function showRule(target, rule, errors) {
    target.textContent = "";
    if (errors) {
      line(target, "Fix this rule to count it: " + errors.join("; "), "audience-nobody");
      return;
    }
    if (!rule) { line(target, "—"); return; }
    if (rule.segment_warning) { line(target, rule.segment_warning, "audience-nobody segment-warning"); }
    line(target, number(rule.matching) + " match · " + number(rule.taken) + " taken by this rule (" +
      number(rule.control) + " control) · " + number(rule.sendable) + " to send now",
      rule.sendable > 0 ? "audience-total" : "audience-total audience-zero");
    var steps = document.createElement("ol");
    steps.className = "audience-steps";
    rule.steps.forEach(function (step) {
      var item = document.createElement("li");
      item.textContent = step[0] + ": " + number(step[1]);
      steps.appendChild(item);
    });
    target.appendChild(steps);
    Object.keys(rule.suppressed).forEach(function (reason) {
      line(target, "Suppressed — " + reason + ": " + number(rule.suppressed[reason]), "audience-suppressed");
    });
    if (rule.nobody_because) { line(target, "Reaches nobody: " + rule.nobody_because + ".", "audience-nobody"); }
  }

  ready(function () {
    var box = document.getElementById("rule-builder");
    var form = document.getElementById("campaign_form");
    if (!box || !form) { return; }
    var total = box.querySelector(".audience-campaign");
    var timer = null;
    var sequence = 0;

    function render(data) {
      total.textContent = "Eligible now (both arms): " + number(data.eligible) + " · to send now: " + number(data.sendable) + ".";
      document.querySelectorAll(".rule-audience").forEach(function (target) {
        var inline = target.closest(".inline-related");
        var match = inline && inline.id.match(/^rules-(\d+)$/);
        if (!match) { return; }
        showRule(target, data.rules[match[1]], data.errors[match[1]]);
      });
    }

    function refresh() {
      var body = new FormData(form);
      body.set("campaign_id", box.dataset.campaignId || "");
      var mine = ++sequence;
      total.textContent = "Counting…";
      fetch(box.dataset.audienceUrl, {
        method: "POST", body: body, credentials: "same-origin",
        headers: {"X-CSRFToken": body.get("csrfmiddlewaretoken") || ""}
      }).then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      }).then(function (data) {
        if (mine === sequence) { render(data); }
      }).catch(function (error) {
        if (mine === sequence) { total.textContent = "Could not count the audience (" + error.message + ")."; }
      });
    }

    function schedule() {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, 500);
    }

    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
    refresh();
  });
}());

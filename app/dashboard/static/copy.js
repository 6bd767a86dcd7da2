/* clicktrack dashboard: the link builder's copy button. The page works without it: the
   tracking URL is a read-only text field to select and copy; this only shows the button
   (hidden where scripts do not run) and copies on a click. */
"use strict";
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  button.hidden = false;
  button.addEventListener("click", function () {
    var field = document.getElementById(button.dataset.copy);
    if (!field) return;
    field.focus();
    field.select();
    var done = function () {
      button.textContent = "Copied";
      button.classList.add("copied");
    };
    var fallback = function () {
      if (document.execCommand("copy")) done();
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, fallback);
    } else {
      fallback();
    }
  });
});

// Fogline console: live sections. A section with data-live="URL" listens to
// the hub's server-sent events there and shows each `progress` event's HTML
// (rendered and escaped by the hub) in place, without reloading the page.
"use strict";
document.querySelectorAll("[data-live]").forEach(function (section) {
  var source = new EventSource(section.getAttribute("data-live"));
  source.addEventListener("progress", function (event) {
    section.innerHTML = event.data;
  });
  source.addEventListener("end", function () {
    source.close();
  });
});

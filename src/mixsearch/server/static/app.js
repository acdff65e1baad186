// mixsearch page: image drop / paste / choose, a shareable URL for text queries, the calibration toggle.
// The page works without this script (the form posts); this only makes it nicer.
(function () {
  "use strict";
  const form = document.getElementById("search");
  const input = document.getElementById("image");
  const drop = document.getElementById("drop");
  const preview = document.getElementById("preview");
  const clear = document.getElementById("clear-image");
  const label = drop && drop.querySelector(".drop-text span");
  const results = document.getElementById("results");
  let previewUrl = null;

  function showImage() {
    const file = input.files && input.files[0];
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    if (file) {
      previewUrl = URL.createObjectURL(file);
      preview.src = previewUrl;
      preview.hidden = false;
      clear.hidden = false;
      drop.classList.add("has-image");
      label.textContent = file.name;
    } else {
      preview.hidden = true;
      clear.hidden = true;
      drop.classList.remove("has-image");
      label.textContent = "Image";
    }
  }

  function setFile(file) {
    const transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    showImage();
  }

  if (input) {
    input.addEventListener("change", showImage);
    clear.addEventListener("click", function (event) {
      event.preventDefault();
      event.stopPropagation();
      input.value = "";
      showImage();
    });
    ["dragenter", "dragover"].forEach(function (type) {
      document.addEventListener(type, function (event) {
        event.preventDefault();
        drop.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      document.addEventListener(type, function (event) {
        event.preventDefault();
        if (type === "drop" || event.target === document.documentElement) drop.classList.remove("over");
      });
    });
    document.addEventListener("drop", function (event) {
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file && file.type.indexOf("image/") === 0) {
        setFile(file);
        form.requestSubmit();
      }
    });
    document.addEventListener("paste", function (event) {
      const items = (event.clipboardData && event.clipboardData.files) || [];
      if (items.length && items[0].type.indexOf("image/") === 0) {
        setFile(items[0]);
      }
    });
  }

  if (form) {
    // Without an image, search by GET: the address can be shared and bookmarked.
    form.addEventListener("submit", function () {
      const hasImage = input && input.files && input.files.length > 0;
      if (!hasImage) {
        form.method = "get";
        form.enctype = "application/x-www-form-urlencoded";
        if (input) input.disabled = true;
        const view = form.querySelector("input[name=view]:checked");
        if (view && view.value === "both") view.disabled = true;
        const modality = form.querySelector("select[name=modality]");
        if (modality && !modality.value) modality.disabled = true;
        const where = form.querySelector("input[name=where]");
        if (where && !where.value.trim()) where.disabled = true;
        const k = form.querySelector("select[name=k]");
        if (k && k.value === "10") k.disabled = true;
      }
    });
    // Changing k or the filter re-runs a text query at once.
    form.querySelectorAll("select[name=k], select[name=modality]").forEach(function (select) {
      select.addEventListener("change", function () {
        const q = document.getElementById("q");
        if (q && q.value.trim() && !(input && input.files.length)) form.requestSubmit();
      });
    });
  }

  // A thumbnail that fails to load (its file went away) shows a placeholder, not a broken image.
  document.addEventListener("error", function (event) {
    const img = event.target;
    if (img && img.tagName === "IMG" && img.parentElement && img.parentElement.classList.contains("thumb")) {
      img.parentElement.classList.add("broken");
    }
  }, true);

  // The calibration toggle: both rankings are on the page already; show one or both.
  document.querySelectorAll("#view-toggle input").forEach(function (radio) {
    radio.addEventListener("change", function () {
      if (!radio.checked) return;
      if (results) results.dataset.view = radio.value;
      const url = new URL(window.location.href);
      if (radio.value === "both") url.searchParams.delete("view");
      else url.searchParams.set("view", radio.value);
      document.querySelectorAll("a.like").forEach(function (link) {
        const target = new URL(link.href);
        if (radio.value === "both") target.searchParams.delete("view");
        else target.searchParams.set("view", radio.value);
        link.href = target.toString();
      });
      window.history.replaceState(null, "", url.toString());
    });
  });
})();

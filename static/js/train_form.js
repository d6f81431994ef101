// The "Train a model" page (training_app/templates/training_app/new.html).
//
// It ties the embedded layer builder (builder.js) to the rest of the form, and draws the previews:
// - opening a ready-made network sets the form's network, optimizer and step size to what it trains
//   best with; editing its layers makes the network "custom" (the server checks this again);
// - the colour setting is passed on to the builder (it reads the image size box itself);
// - the fine-tuning settings show only for a pretrained network with layers to fine-tune;
// - "What the network will see" and "Examples of the random changes" ask the server
//   (training_app/preview_views.py) for pictures whenever the settings they depend on change.
// Without JavaScript the page is a plain form: the network is then chosen from a list.
(function () {
  "use strict";

  const PREVIEW_DELAY_MS = 300; // wait for a pause in typing before asking the server
  const SHOWN_AT_LEAST = 96; // CSS pixels: tiny pictures are enlarged to this, pixel by pixel
  const SHOWN_AT_MOST = 160;
  const INPUT_NAMES = ["image_size", "channels", "resize_mode"];
  const AUGMENT_PREFIX = "augment_";
  const NO_ANSWER = "The pictures could not be made: the server did not answer. Change a setting to try again.";

  const form = document.getElementById("train-form");
  if (!form) return;

  const { el } = window.site;

  // The same network written with its keys in any order gives the same text.
  function canonical(value) {
    if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
    if (value && typeof value === "object") {
      return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(",")}}`;
    }
    return JSON.stringify(value);
  }

  const fields = form.elements; // fields.optimizer and the like are radio buttons: setting .value checks one
  const presetField = fields.preset; // a <select>: the choice itself without JavaScript, kept in step with it

  // ---- the network

  const builderElement = document.getElementById("model-builder");
  const builder = builderElement && builderElement.modelBuilder;
  const fineTune = document.getElementById("fine-tune-fields");
  const presetNote = document.getElementById("preset-note");
  const networkWarning = document.getElementById("network-warning");

  if (builder) {
    const presetChoice = document.getElementById("preset-choice");
    if (presetChoice && !presetChoice.querySelector(".errorlist")) presetChoice.hidden = true;
    const presets = new Map((builder.presets || []).map((preset) => [preset.key, preset]));
    let opened = presets.has(presetField.value) ? presets.get(presetField.value) : null;

    builderElement.addEventListener("model-builder:preset", (event) => {
      const preset = event.detail;
      opened = preset;
      presetField.value = preset.key;
      fields.optimizer.value = preset.optimizer;
      fields.learning_rate.value = preset.learning_rate;
      if (preset.fine_tune_learning_rate) fields.fine_tune_learning_rate.value = preset.fine_tune_learning_rate;
      const chosen = form.querySelector(`input[name=optimizer][value="${preset.optimizer}"]`);
      const method = chosen && chosen.labels.length
        ? chosen.labels[0].textContent.trim().split(" (")[0] : preset.optimizer;
      presetNote.textContent = `“${preset.label}” trains best with ${method} at a step size of `
        + `${preset.learning_rate}: both are set for you.`;
      presetNote.hidden = false;
    });

    // A ready-made network whose layers were changed is one built by hand.
    const networkChanged = (spec) => {
      presetField.value = opened && canonical(spec) === canonical(opened.spec) ? opened.key : "custom";
      showFineTuning(spec);
    };
    builderElement.addEventListener("model-builder:changed", (event) => networkChanged(event.detail));

    builderElement.addEventListener("model-builder:checked", (event) => {
      const result = event.detail;
      networkWarning.hidden = result.ok;
      networkWarning.textContent = result.ok ? ""
        : "The network cannot be built as it is: see “The network” above. Training cannot start until it is mended.";
    });

    networkChanged(builder.getSpec());
  }

  function showFineTuning(spec) {
    const base = spec && spec.base;
    const wanted = Boolean(base && Number(base.fine_tune_layers) > 0);
    fineTune.hidden = !wanted && !fineTune.querySelector(".errorlist");
  }

  // ---- the previews

  class Preview {
    constructor(box, url, params, draw) {
      this.box = box;
      this.url = url;
      this.params = params;
      this.draw = draw;
      this.status = box.querySelector(".tf-preview-status");
      this.sequence = 0; // answers to older requests are ignored
      this.timer = null;
      this.controller = null;
      box.hidden = false;
    }

    schedule() {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.load(), PREVIEW_DELAY_MS);
    }

    async load() {
      clearTimeout(this.timer);
      const sequence = ++this.sequence;
      if (this.controller) this.controller.abort();
      this.controller = new AbortController();
      this.box.classList.add("tf-loading");
      this.box.setAttribute("aria-busy", "true");
      let result;
      try {
        const { status, answer } = await site.requestJson(`${this.url}?${new URLSearchParams(this.params())}`, {
          signal: this.controller.signal,
        });
        result = typeof answer.ok === "boolean" ? answer
          : { ok: false, message: `The pictures could not be made (the server answered ${status}).` };
      } catch (error) {
        if (error.name === "AbortError") return;
        result = { ok: false, message: NO_ANSWER };
      }
      if (sequence !== this.sequence) return; // a newer request is on its way
      this.box.classList.remove("tf-loading");
      this.box.removeAttribute("aria-busy");
      this.box.classList.toggle("tf-failed", !result.ok);
      if (!result.ok) {
        this.status.textContent = result.message;
        this.draw(null);
        return;
      }
      this.status.textContent = this.draw(result);
    }
  }

  function picture(src, size, alt) {
    const shown = Math.max(SHOWN_AT_LEAST, Math.min(size, SHOWN_AT_MOST));
    return el("img", { src, alt, width: shown, height: shown, className: shown > size ? "tf-pixelated" : null });
  }

  function describe(result) {
    const colour = result.channels === 1 ? "in grayscale" : "in colour";
    const shown = Math.max(SHOWN_AT_LEAST, Math.min(result.size, SHOWN_AT_MOST));
    const enlarged = shown > result.size
      ? ` Shown enlarged: each little square is one pixel the network sees.` : "";
    return `${result.size} × ${result.size} pixels, ${colour}.${enlarged}`;
  }

  const inputBox = document.getElementById("input-preview");
  const inputStrip = inputBox.querySelector(".tf-strip");
  const inputPreview = new Preview(inputBox, form.dataset.inputPreviewUrl, inputParams, (result) => {
    if (!result) {
      inputStrip.replaceChildren();
      return "";
    }
    inputStrip.replaceChildren(...result.images.map((image, index) => el("figure", {},
      picture(image.src, result.size, `Training picture ${index + 1} (${image.label}) as the network sees it`),
      el("figcaption", { text: image.label }))));
    return result.message || describe(result);
  });

  const augmentBox = document.getElementById("augment-preview");
  const augmentGrid = augmentBox.querySelector(".tf-grid");
  let variant = 0; // "Show other random changes" asks for another set
  const augmentPreview = new Preview(augmentBox, form.dataset.augmentPreviewUrl, augmentParams, (result) => {
    augmentGrid.hidden = !result || !result.on || !result.rows.length;
    if (!result) {
      augmentGrid.replaceChildren();
      return "";
    }
    if (result.message) return result.message;
    if (!result.on) {
      augmentGrid.replaceChildren();
      return "No random changes are switched on: the network sees every picture exactly as it is. "
        + "Set one above to see what it does.";
    }
    const variants = result.rows[0].variants.length;
    augmentGrid.style.setProperty("--tf-columns", String(variants + 1));
    augmentGrid.replaceChildren(
      el("div", { className: "tf-grid-head" }, "The picture"),
      ...Array.from({ length: variants }, (_, i) => el("div", { className: "tf-grid-head" }, `Random change ${i + 1}`)),
      ...result.rows.flatMap((row, r) => [
        el("figure", { className: "tf-original" },
          picture(row.original, result.size, `Training picture ${r + 1} (${row.label})`),
          el("figcaption", { text: row.label })),
        ...row.variants.map((src, i) => el("figure", {},
          picture(src, result.size, `Training picture ${r + 1} (${row.label}), random change ${i + 1}`))),
      ]));
    return `Each row: one of your training pictures, then ${variants} random changes of it as training could `
      + `make them. ${describe(result)}`;
  });

  function inputParams() {
    return { size: fields.image_size.value.trim(), channels: fields.channels.value, resize: fields.resize_mode.value };
  }

  function augmentParams() {
    const params = inputParams();
    for (const field of form.querySelectorAll(`[name^="${AUGMENT_PREFIX}"]`)) {
      params[field.name.slice(AUGMENT_PREFIX.length)] = field.value.trim();
    }
    params.variant = String(variant);
    return params;
  }

  function onSettingChange(event) {
    const name = event.target.name || "";
    if (INPUT_NAMES.includes(name)) {
      if (name === "channels" && builder) {
        builder.setInput(builder.parseNumber(fields.image_size.value), Number(fields.channels.value));
      }
      inputPreview.schedule();
      augmentPreview.schedule();
    } else if (name.startsWith(AUGMENT_PREFIX)) {
      augmentPreview.schedule();
    }
  }

  form.addEventListener("input", onSettingChange);
  form.addEventListener("change", onSettingChange);
  document.getElementById("augment-again").addEventListener("click", () => {
    variant += 1;
    augmentPreview.load();
  });

  inputPreview.load();
  augmentPreview.load();

  // ---- about how long it takes: the server estimates it for the settings as they are now, and picks
  // the picture size that fits a chosen time (training_app/views.py run_estimate)

  const estimate = document.getElementById("time-estimate");
  if (estimate) {
    const estimateText = document.getElementById("time-estimate-text");
    let estimateTimer = null;
    let asked = 0;
    const askForEstimate = (budgetChanged) => {
      clearTimeout(estimateTimer);
      estimateTimer = setTimeout(async () => {
        const mine = ++asked;
        const query = new URLSearchParams(new FormData(form));
        query.delete("csrfmiddlewaretoken");
        try {
          const { answer } = await site.requestJson(`${estimate.dataset.url}?${query}`);
          if (mine !== asked || !answer.text) return; // a later change has asked again, or the settings are not valid yet
          estimateText.textContent = answer.text;
          const plan = document.getElementById("time-plan");
          if (plan) {
            plan.textContent = answer.plan || "";
            plan.hidden = !answer.plan;
            if (answer.plan_url) {
              // The time chosen buys a bigger plan than the settings in the form: offer the form with it.
              const link = document.createElement("a");
              link.href = answer.plan_url;
              link.id = "time-plan-link";
              link.textContent = "Use the suggested settings for this time";
              plan.append(" ", link);
            }
          }
          if (budgetChanged && answer.image_size && String(answer.image_size) !== fields.image_size.value) {
            fields.image_size.value = answer.image_size;
            fields.image_size.dispatchEvent(new Event("input", {bubbles: true}));
            fields.image_size.dispatchEvent(new Event("change", {bubbles: true}));
          }
        } catch (error) {
          // No answer: the estimate shown stays the last one; the form works without it.
        }
      }, PREVIEW_DELAY_MS);
    };
    form.addEventListener("change", (event) => askForEstimate(event.target.name === "time_budget_s"));
    if (builderElement) builderElement.addEventListener("model-builder:changed", () => askForEstimate(false));
  }
})();

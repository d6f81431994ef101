// The layer-by-layer network builder, a self-contained component:
//
//   const builder = new ModelBuilder(element, {checkUrl, presets, schema, bases, baseParams,
//                                              imageSize, channels, dataset, spec, inputName});
//   builder.getSpec(); builder.setSpec(spec); builder.openPreset("small_cnn");
//   builder.setInput(imageSize, channels);
//
// It keeps a hidden <input name="model_spec"> inside `element` up to date, so inside a form the spec
// is sent with it. Every change is checked by the server (mlcore/builder.py builds the Keras model),
// which answers with the summary or a plain-words error; this file only edits and draws.
// Events on `element`: "model-builder:preset" (detail: the preset opened, with its optimizer and
// learning rate), "model-builder:changed" (detail: the spec, after any edit, before it is checked)
// and "model-builder:checked" (detail: the server's answer).
//
// Any element with data-model-builder="<id of a json_script with the options>" gets a builder when
// the page loads; data-check-url, data-size-input (id of an image size box) and data-preset are read too.
(function () {
  "use strict";

  const CHECK_DELAY_MS = 300; // wait for a pause in typing before asking the server
  const CHECK_FAILED = "The network could not be checked: the server did not answer. It is checked again when you change something.";

  const { el, csrfToken } = window.site;

  const number = (n) => Number(n).toLocaleString("en");
  const copy = (value) => JSON.parse(JSON.stringify(value));

  class ModelBuilder {
    constructor(element, options) {
      this.element = element;
      this.options = options;
      this.schema = options.schema;
      this.presets = options.presets || [];
      this.imageSize = options.imageSize;
      this.channels = options.channels;
      this.spec = { layers: [], base: null };
      this.lastResult = null;
      this.sequence = 0; // answers to older checks are ignored
      this.timer = null;
      this.controller = null;
      this.drawSkeleton();
      if (options.spec) this.setSpec(options.spec);
    }

    // ---- the public API

    getSpec() {
      return copy(this.spec);
    }

    setSpec(spec) {
      this.spec = { layers: copy((spec && spec.layers) || []), base: spec && spec.base ? copy(spec.base) : null };
      this.drawLayers();
      this.changed();
    }

    openPreset(key) {
      const preset = this.presets.find((p) => p.key === key);
      if (!preset || !preset.available) return false;
      this.description.textContent = `${preset.label} — ${preset.description}`;
      this.setSpec(preset.spec);
      this.element.dispatchEvent(new CustomEvent("model-builder:preset", { detail: copy(preset) }));
      return true;
    }

    setInput(imageSize, channels) {
      this.imageSize = imageSize;
      this.channels = channels;
      this.scheduleCheck();
    }

    // ---- drawing

    drawSkeleton() {
      const presetButtons = this.presets.map((preset) => el("button", {
        type: "button", className: "secondary mb-preset", "data-preset": preset.key,
        disabled: !preset.available, title: preset.available ? preset.description : preset.reason,
      }, preset.label));
      const unavailable = this.presets.filter((p) => !p.available).map((p) => el("li", {}, el("strong", {}, p.label), ": ", p.reason));
      this.description = el("p", { className: "mb-description muted" });
      this.hidden = el("input", { type: "hidden", name: this.options.inputName || "model_spec" });
      this.baseBox = el("div", { className: "mb-base", hidden: true });
      this.list = el("ol", { className: "mb-layers", "aria-label": "Layers" });
      this.addType = el("select", { className: "mb-add-type", "aria-label": "Kind of layer to add" },
        Object.entries(this.schema).map(([type, info]) => el("option", { value: type }, `${info.label}`)));
      this.status = el("p", { className: "mb-status muted", "aria-live": "polite" });
      this.error = el("p", { className: "message error mb-error", role: "alert", hidden: true });
      this.table = el("table", { className: "mb-summary", hidden: true });
      this.totals = el("p", { className: "mb-totals", hidden: true });

      this.element.replaceChildren(
        el("div", { className: "mb-presets" },
          el("h2", {}, "Start from a ready-made network"),
          el("div", { className: "actions" }, presetButtons),
          unavailable.length ? el("ul", { className: "mb-unavailable muted" }, unavailable) : null,
          this.description),
        el("div", { className: "mb-columns" },
          el("div", { className: "mb-editor" },
            el("h2", {}, "Layers"),
            el("p", { className: "mb-fixed muted" }, "First, added for you: the image's pixels, scaled for the network."),
            this.baseBox,
            this.list,
            el("p", { className: "mb-fixed muted" }, "Last, added for you: the output layer, one probability per class."),
            el("div", { className: "mb-add-row" }, this.addType,
              el("button", { type: "button", className: "mb-add" }, "Add layer"))),
          el("div", { className: "mb-result" },
            el("h2", {}, "What Keras will build"),
            this.status, this.error, this.table, this.totals)),
        this.hidden);

      this.element.addEventListener("click", (event) => this.onClick(event));
      this.element.addEventListener("input", (event) => this.onEdit(event));
      this.element.addEventListener("change", (event) => this.onEdit(event));
    }

    drawLayers() {
      const base = this.spec.base;
      this.baseBox.hidden = !base;
      if (base) {
        const info = (this.options.bases || {})[base.name] || { label: base.name, about: "" };
        this.baseBox.replaceChildren(
          el("p", {}, el("strong", {}, `Pretrained ${info.label}`), ` ${info.about} It stays as it is while the new layers below learn.`),
          el("div", { className: "mb-params" },
            Object.entries(this.options.baseParams || {}).map(([name, param]) => this.field(param, base[name], { "data-base-param": name }))));
      }
      const count = this.spec.layers.length;
      this.list.replaceChildren(...this.spec.layers.map((layer, index) => {
        const info = this.schema[layer.type] || { label: layer.type, help: "", params: {} };
        const n = index + 1;
        return el("li", { className: "mb-layer", "data-index": index },
          el("div", { className: "mb-layer-head" },
            el("span", { className: "mb-number" }, String(n)),
            el("strong", { className: "mb-label" }, info.label),
            el("span", { className: "mb-type muted" }, layer.type),
            el("span", { className: "mb-tools" },
              el("button", { type: "button", className: "secondary mb-up", "aria-label": `Move layer ${n} up`, title: "Move up", disabled: index === 0 }, "↑"),
              el("button", { type: "button", className: "secondary mb-down", "aria-label": `Move layer ${n} down`, title: "Move down", disabled: index === count - 1 }, "↓"),
              el("button", { type: "button", className: "secondary mb-remove", "aria-label": `Remove layer ${n}` }, "Remove"))),
          info.help ? el("p", { className: "mb-help muted" }, info.help) : null,
          Object.keys(info.params).length ? el("div", { className: "mb-params" },
            Object.entries(info.params).map(([name, param]) => this.field(param, layer[name] ?? param.default, { "data-param": name }))) : null);
      }));
    }

    field(param, value, dataAttrs) {
      let input;
      if (param.kind === "choice") {
        input = el("select", dataAttrs, param.choices.map(([choice, label]) => {
          const option = el("option", { value: choice }, label);
          option.selected = choice === value;
          return option;
        }));
      } else {
        input = el("input", {
          type: "number", min: param.min, max: param.max, step: param.kind === "float" ? param.step || "any" : 1,
          value: value, ...dataAttrs,
        });
      }
      return el("label", { className: "mb-field", title: param.help || null }, el("span", {}, param.label), input);
    }

    // ---- editing

    onClick(event) {
      const button = event.target.closest("button");
      if (!button || !this.element.contains(button)) return;
      if (button.matches(".mb-preset")) {
        this.openPreset(button.dataset.preset);
        return;
      }
      if (button.matches(".mb-add")) {
        const type = this.addType.value;
        const layer = { type };
        for (const [name, param] of Object.entries(this.schema[type].params)) layer[name] = param.default;
        this.spec.layers.push(layer);
        this.afterStructureChange();
        return;
      }
      const item = button.closest(".mb-layer");
      if (!item) return;
      const index = Number(item.dataset.index);
      const layers = this.spec.layers;
      if (button.matches(".mb-remove")) layers.splice(index, 1);
      else if (button.matches(".mb-up") && index > 0) [layers[index - 1], layers[index]] = [layers[index], layers[index - 1]];
      else if (button.matches(".mb-down") && index < layers.length - 1) [layers[index + 1], layers[index]] = [layers[index], layers[index + 1]];
      else return;
      this.afterStructureChange();
    }

    afterStructureChange() {
      this.drawLayers();
      this.changed();
    }

    onEdit(event) {
      const input = event.target;
      const name = input.dataset.param || input.dataset.baseParam;
      if (!name) return;
      const value = input.tagName === "SELECT" ? input.value : this.parseNumber(input.value);
      if (input.dataset.baseParam) {
        this.spec.base[name] = value;
      } else {
        const index = Number(input.closest(".mb-layer").dataset.index);
        this.spec.layers[index][name] = value;
      }
      this.changed();
    }

    parseNumber(text) {
      // Not a number: sent as typed, so that the server's plain-words message explains what is wanted.
      return text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text;
    }

    changed() {
      this.hidden.value = JSON.stringify(this.spec);
      this.element.dispatchEvent(new CustomEvent("model-builder:changed", { detail: this.getSpec() }));
      this.scheduleCheck();
    }

    // ---- checking on the server

    scheduleCheck() {
      clearTimeout(this.timer);
      this.status.textContent = "Checking…";
      this.timer = setTimeout(() => this.check(), CHECK_DELAY_MS);
    }

    async check() {
      const sequence = ++this.sequence;
      if (this.controller) this.controller.abort();
      this.controller = new AbortController();
      const body = { spec: this.spec, image_size: this.imageSize, channels: this.channels };
      if (this.options.dataset) body.dataset = this.options.dataset;
      let result;
      try {
        const { status, answer, loggedOut } = await site.requestJson(this.options.checkUrl, {
          method: "POST", signal: this.controller.signal,
          headers: { "Content-Type": "application/json", "X-CSRFToken": this.options.csrfToken || csrfToken() },
          body: JSON.stringify(body),
        });
        result = !loggedOut && (status === 200 || status === 400) ? answer
          : { ok: false, message: `The network could not be checked (the server answered ${status}). Reload the page and try again.` };
      } catch (error) {
        if (error.name === "AbortError") return;
        result = { ok: false, message: CHECK_FAILED };
      }
      if (sequence !== this.sequence) return; // a newer check is on its way
      this.show(result);
    }

    show(result) {
      this.lastResult = result;
      this.status.textContent = "";
      for (const item of this.list.querySelectorAll(".mb-bad")) item.classList.remove("mb-bad");
      this.error.hidden = result.ok;
      this.table.hidden = !result.ok;
      this.totals.hidden = !result.ok;
      if (!result.ok) {
        this.error.textContent = result.message;
        const bad = result.layer ? this.list.querySelector(`.mb-layer[data-index="${result.layer - 1}"]`) : null;
        if (bad) bad.classList.add("mb-bad");
      } else {
        this.table.replaceChildren(
          el("thead", {}, el("tr", {}, el("th", { className: "num" }, "#"), el("th", {}, "Layer"),
            el("th", {}, "Output shape"), el("th", { className: "num" }, "Parameters"))),
          el("tbody", {}, result.rows.map((row) => el("tr", { className: row.layer ? "" : "mb-implicit" },
            el("td", { className: "num" }, row.layer ? String(row.layer) : ""),
            el("td", {}, row.label, " ", el("span", { className: "muted" }, `(${row.type})`)),
            el("td", { className: "mb-shape" }, row.output_shape),
            el("td", { className: "num" }, number(row.params))))));
        let text = `Total: ${number(result.total_params)} parameters (numbers to learn), ${number(result.trainable_params)} of them trained`;
        const fixed = result.total_params - result.trainable_params;
        if (fixed && result.spec && result.spec.base) text += "; the pretrained network's stay as they are";
        else if (fixed) text += `; the other ${number(fixed)} are averages that batch normalisation keeps`;
        text += ".";
        if (result.fine_tune_trainable_params) text += ` While fine-tuning: ${number(result.fine_tune_trainable_params)} trained.`;
        this.totals.textContent = text;
      }
      this.element.dispatchEvent(new CustomEvent("model-builder:checked", { detail: result }));
    }
  }

  window.ModelBuilder = ModelBuilder;

  function start(element) {
    const options = JSON.parse(document.getElementById(element.dataset.modelBuilder).textContent);
    if (element.dataset.checkUrl) options.checkUrl = element.dataset.checkUrl;
    const builder = new ModelBuilder(element, options);
    const size = element.dataset.sizeInput && document.getElementById(element.dataset.sizeInput);
    if (size) size.addEventListener("input", () => builder.setInput(builder.parseNumber(size.value), builder.channels));
    if (!options.spec && element.dataset.preset) builder.openPreset(element.dataset.preset);
    element.modelBuilder = builder; // for the page around it
  }

  document.querySelectorAll("[data-model-builder]").forEach(start);
})();

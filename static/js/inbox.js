// The inbox: one unlabelled picture at a time, filed with a click or the key shown on a class.
//
// The next picture shows at once: labels are saved in the background, and the pictures after
// the current one are already downloaded. Saves go out one after another, so an undo always
// reaches the server after the label it takes back.
(function () {
  const data = JSON.parse(document.getElementById("inbox-data").textContent);
  const byId = (id) => document.getElementById(id);
  const { el } = window.site;

  const NUMBER_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]; // the tenth is 0, as on a keyboard
  const COMMAND_KEYS = new Set(["s", "z"]); // skip and undo: never a class's key
  const REFILL_BELOW = 10; // ask for more pictures while plenty are still waiting
  const PRELOAD_AHEAD = 2;
  const HELD_IDS_SENT = 200; // keeps the queue request's address short; the page drops repeats anyway
  const OFFLINE = "The server could not be reached. Check the connection and try again.";
  const LOAD_FAILED = "The next pictures could not be loaded. Check the connection, then reload the page.";
  const LOGGED_OUT = "You are no longer logged in. Reload the page to log in again.";

  const classes = data.classes.slice();
  let queue = data.queue.slice(); // pictures to show; the first is on screen
  let skipped = []; // shown again once the others are done
  const labelledNow = []; // pictures labelled on this visit, newest last: what undo takes back
  // The server sends unlabelled pictures in order after this position: the id, or with a model's
  // suggestions the picture's place from least sure to surest (label_views._unlabelled_after).
  let cursor = queue.length ? queue[queue.length - 1].position : 0;
  let exhausted = queue.length === 0; // nothing more after `cursor`
  let remaining = data.remaining;
  let savesInFlight = 0;
  let saving = Promise.resolve();
  let refilling = null;
  const preloaded = new Map(); // id -> Image being downloaded ahead

  function showError(message) {
    byId("inbox-error").textContent = message;
    byId("inbox-error").hidden = false;
  }

  function hideError() {
    byId("inbox-error").hidden = true;
  }

  // site.requestJson, with the message for a session that has ended.
  async function request(url, options = {}) {
    const result = await site.requestJson(url, options);
    return result.loggedOut ? { ok: false, status: 401, answer: { error: LOGGED_OUT } } : result;
  }

  // A class whose name is one digit or letter is picked with that key, so on a digits dataset
  // key 1 files a picture under "1", not under the first class ("0"). The other classes get the
  // number keys left over, in order; past those, a class is picked by clicking only.
  function ownKey(name) {
    const key = name.trim().toLowerCase();
    return /^[0-9a-z]$/.test(key) && !COMMAND_KEYS.has(key) ? key : null;
  }

  function classKeys() {
    const keys = new Map(); // class id -> key, as event.key gives it (lower case)
    const taken = new Set();
    for (const imageClass of classes) {
      const key = ownKey(imageClass.name);
      if (key && !taken.has(key)) {
        keys.set(imageClass.id, key);
        taken.add(key);
      }
    }
    const free = NUMBER_KEYS.filter((key) => !taken.has(key));
    for (const imageClass of classes) {
      if (!keys.has(imageClass.id) && free.length) keys.set(imageClass.id, free.shift());
    }
    return keys;
  }

  let keyOfClass = new Map();

  function renderClasses() {
    const box = byId("inbox-classes");
    box.replaceChildren();
    keyOfClass = classKeys();
    classes.forEach((imageClass) => {
      const keyName = keyOfClass.get(imageClass.id);
      const shown = keyName ? keyName.toUpperCase() : null; // as printed on the keyboard
      const button = el("button", { type: "button", className: "inbox-class", "data-class-id": imageClass.id,
                                    title: shown && `Key: ${shown}` },
                        shown && el("kbd", { text: shown }), shown && " ", imageClass.name);
      button.addEventListener("click", () => label(imageClass.id));
      box.append(button);
    });
    byId("inbox-no-classes").hidden = classes.length > 0;
  }

  function updateCounts() {
    const labelled = labelledNow.length;
    byId("inbox-left").textContent = `${remaining} left`;
    byId("inbox-done-count").textContent = `${labelled} labelled on this visit`;
    const total = labelled + remaining;
    byId("inbox-bar").style.width = `${total ? (100 * labelled) / total : 0}%`;
    byId("inbox-undo").disabled = labelledNow.length === 0;
    byId("inbox-empty-undo").hidden = labelledNow.length === 0;
  }

  function preloadNext() {
    for (const image of queue.slice(1, 1 + PRELOAD_AHEAD)) {
      if (preloaded.has(image.id)) continue;
      const loader = new Image();
      loader.src = image.url;
      preloaded.set(image.id, loader);
    }
  }

  async function fetchMore() {
    const held = queue.concat(skipped).map((image) => image.id).slice(0, HELD_IDS_SENT);
    const params = new URLSearchParams({ after: cursor, held: held.join(",") });
    const { ok, answer } = await request(`${data.queueUrl}?${params}`);
    if (!ok) throw new Error(answer.error || LOAD_FAILED);
    if (!savesInFlight) remaining = answer.remaining;
    if (!answer.images.length) {
      exhausted = true;
      return;
    }
    cursor = Math.max(cursor, ...answer.images.map((image) => image.position));
    const heldIds = new Set(queue.concat(skipped).map((image) => image.id));
    queue.push(...answer.images.filter((image) => !heldIds.has(image.id)));
  }

  function refill() {
    if (!refilling) refilling = fetchMore().finally(() => { refilling = null; });
    return refilling;
  }

  // The queue ran out: ask for more, bring the skipped pictures back, or look once more from the
  // start for pictures that came back to the inbox meanwhile (an undo, a class deleted elsewhere).
  async function findMore() {
    if (!exhausted) await refill();
    if (!queue.length && skipped.length) {
      queue = skipped;
      skipped = [];
    }
    if (!queue.length && cursor > 0) {
      await saving; // pictures being filed right now are still in the inbox on the server
      cursor = 0;
      exhausted = false;
      await refill();
    }
  }

  // Keys pressed while this shows do nothing, rather than label a picture no longer on screen.
  function showLoading() {
    const picture = byId("inbox-image");
    picture.removeAttribute("src");
    delete picture.dataset.imageId;
    byId("inbox-name").textContent = "Loading the next picture…";
    byId("inbox-size").textContent = "";
  }

  async function showCurrent() {
    if (!queue.length) {
      showLoading();
      try {
        await findMore();
      } catch (error) {
        showError(error instanceof TypeError ? LOAD_FAILED : error.message);
        return; // an empty inbox would wrongly say that nothing is left
      }
    }
    const image = queue[0];
    byId("inbox").hidden = !image;
    byId("inbox-empty").hidden = Boolean(image);
    updateCounts();
    if (!image) return;
    const picture = byId("inbox-image");
    // Small pictures are blown up with sharp pixels rather than blurred.
    picture.classList.toggle("pixelated", Math.max(image.width, image.height) < 256);
    picture.src = image.url;
    picture.dataset.imageId = image.id;
    byId("inbox-name").textContent = image.name;
    byId("inbox-size").textContent = `${image.width} × ${image.height} pixels`;
    showSuggestion(image);
    preloaded.delete(image.id);
    preloadNext();
    if (queue.length < REFILL_BELOW && !exhausted) {
      refill().then(preloadNext, (error) => showError(error instanceof TypeError ? LOAD_FAILED : error.message));
    }
  }

  // Sends one save after the ones before it. If it is refused or lost, `onFailure(message, gone)`
  // runs; `gone` means the picture itself is no longer in the dataset.
  function save(image, classId, onFailure) {
    savesInFlight += 1;
    saving = saving.then(async () => {
      try {
        const { ok, status, answer } = await request(image.labelUrl, {
          method: "POST", body: new URLSearchParams({ class_id: classId }),
        });
        if (status === 404) {
          onFailure("That picture is no longer in the dataset.", true);
        } else if (!ok) {
          onFailure(answer.error || "The label could not be saved; reload the page.", false);
        } else if (savesInFlight === 1) {
          remaining = answer.remaining; // with more saves waiting, this count would already be stale
        }
      } catch {
        onFailure(OFFLINE, false);
      } finally {
        savesInFlight -= 1;
        updateCounts();
      }
    });
  }

  function label(classId) {
    const image = queue.shift();
    if (!image) return;
    hideError();
    labelledNow.push(image);
    remaining = Math.max(0, remaining - 1);
    save(image, String(classId), (message, gone) => {
      const index = labelledNow.indexOf(image);
      if (index < 0) return showError(message); // already undone meanwhile
      labelledNow.splice(index, 1);
      if (gone) return showError(message);
      remaining += 1;
      queue.unshift(image);
      showError(`${message} The picture is shown again.`);
      showCurrent();
    });
    showCurrent();
  }

  function undo() {
    const image = labelledNow.pop();
    if (!image) return;
    hideError();
    remaining += 1;
    queue.unshift(image);
    save(image, "", (message) => showError(`The undo was not saved: ${message}`));
    showCurrent();
  }

  // A picture carries the class a model gave it (the model chosen on this page, else the one of the
  // classification it was sent from): one key accepts it when the dataset has that class.
  function suggestedName(image) {
    return image && ((image.model && image.model.label) || image.suggested);
  }

  function suggestedClass(image) {
    const name = suggestedName(image);
    return name ? classes.find((imageClass) => imageClass.name === name) : null;
  }

  function showSuggestion(image) {
    const suggested = suggestedClass(image);
    const sure = image.model ? `, ${image.model.percent} % sure` : "";
    byId("inbox-suggested").hidden = !suggested;
    if (suggested) {
      byId("inbox-suggested-class").textContent = suggested.name;
      byId("inbox-suggested-sure").textContent = sure;
    }
    const missing = !suggested && image.model;
    byId("inbox-suggested-missing").hidden = !missing;
    if (missing) {
      byId("inbox-missing-class").textContent = image.model.label;
      byId("inbox-missing-sure").textContent = `${image.model.percent} % sure`;
    }
  }

  function acceptSuggestion() {
    const suggested = suggestedClass(queue[0]);
    if (suggested && !byId("inbox").hidden) label(suggested.id);
  }

  function skip() {
    const image = queue.shift();
    if (!image) return;
    hideError();
    skipped.push(image);
    showCurrent();
  }

  byId("inbox-image").addEventListener("error", () => {
    if (byId("inbox-image").getAttribute("src")) {
      showError("This picture could not be loaded. Skip it, or label it anyway.");
    }
  });
  byId("inbox-skip").addEventListener("click", skip);
  byId("inbox-accept").addEventListener("click", acceptSuggestion);
  byId("inbox-undo").addEventListener("click", undo);
  byId("inbox-empty-undo").addEventListener("click", undo);

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (event.target.closest("input, textarea, select, [contenteditable]")) return; // typing a class name
    const chosen = classes.find((imageClass) => keyOfClass.get(imageClass.id) === event.key.toLowerCase());
    if (chosen) {
      event.preventDefault();
      if (!byId("inbox").hidden) label(chosen.id);
    } else if (event.key === "z" || event.key === "Z" || event.key === "Backspace") {
      event.preventDefault();
      undo();
    } else if (event.key === "Enter" && !event.target.closest("button, a") && suggestedClass(queue[0])) {
      event.preventDefault();
      acceptSuggestion();
    } else if (event.key === "s" || event.key === "S") {
      event.preventDefault();
      if (!byId("inbox").hidden) skip();
    }
  });

  byId("inbox-add-class").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = byId("inbox-class-name");
    try {
      const { ok, answer } = await request(data.createClassUrl, {
        method: "POST", body: new URLSearchParams({ name: input.value }),
      });
      if (!ok) return showError(answer.error || "The class could not be added; reload the page.");
      hideError();
      // New classes go last, so the keys of the others stay the same while you work (unless the
      // new one is named like a key another class had: the buttons show the keys as they now are).
      classes.push({ id: answer.id, name: answer.name });
      renderClasses();
      input.value = "";
      input.blur(); // so that the keys label again
    } catch {
      showError(OFFLINE);
    }
  });

  // While a model looks at the inbox, its progress bar moves; once it is done the page shows its suggestions.
  if (data.suggestingUrl) {
    site.poll(data.suggestingUrl, (answer) => {
      byId("suggest-bar").style.width = `${answer.percent}%`;
      byId("suggest-state").textContent = answer.total
        ? `${answer.statusWords}, ${answer.done} of ${answer.total} pictures` : answer.statusWords;
      if (!answer.active) {
        window.location.reload();
        return false;
      }
      return true;
    }, { every: 2000 });
  }

  renderClasses();
  showCurrent();
})();

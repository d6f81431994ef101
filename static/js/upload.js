// Getting images in from the browser: a zip with a progress bar, and folders (or loose
// images) sent in batches that survive a lost connection. Plain JavaScript, no library.
//
// A folder travels in batches because Django takes at most DATA_UPLOAD_MAX_NUMBER_FILES
// files per request and keeps only each file's base name: the path inside the folder,
// which carries the class, goes in a parallel `paths` field. The server's side and its
// answers are described in dlsite/uploads.py (the same for a dataset and a classification).
(function () {
  "use strict";

  const BATCH_BYTES = 20 * 1024 * 1024; // small enough that resending a failed batch is quick
  const RETRY_DELAYS_S = [1, 2, 4, 8];
  const { count, fileSize } = window.site;

  // ---- Words and numbers for people ---------------------------------------------------

  function timeLeft(seconds) {
    if (!Number.isFinite(seconds)) return "";
    if (seconds < 10) return "a few seconds left";
    if (seconds < 90) return `about ${Math.round(seconds / 10) * 10} seconds left`;
    if (seconds < 90 * 60) return `about ${Math.round(seconds / 60)} minutes left`;
    return `about ${(seconds / 3600).toFixed(1)} hours left`;
  }

  function sleep(seconds) {
    return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  }

  // ---- One progress display: bar, text, error and Resume button (_transfer.html) ------

  class Transfer {
    constructor(element) {
      this.element = element;
      this.bar = element.querySelector(".progress");
      this.fill = this.bar.firstElementChild;
      this.text = element.querySelector(".transfer-text");
      this.errorText = element.querySelector(".transfer-error");
      this.resumeButton = element.querySelector(".transfer-resume");
    }

    show(fraction, text) {
      const percent = Math.max(0, Math.min(100, Math.floor(fraction * 100)));
      this.element.hidden = false;
      this.fill.style.width = `${percent}%`;
      this.bar.setAttribute("aria-valuenow", String(percent));
      this.text.textContent = text;
    }

    error(message) {
      if (message) this.element.hidden = false;
      this.errorText.textContent = message || "";
      this.errorText.hidden = !message;
    }

    offerResume(resume) {
      this.resumeButton.hidden = false;
      this.resumeButton.onclick = () => {
        this.resumeButton.hidden = true;
        this.error("");
        resume();
      };
    }
  }

  // Bytes per second since `restart`, for the time left.
  class RateMeter {
    restart() {
      this.startedAt = performance.now();
      this.bytes = 0;
    }

    secondsLeft(remainingBytes) {
      const elapsed = (performance.now() - this.startedAt) / 1000;
      if (elapsed < 1 || this.bytes <= 0) return Infinity;
      return remainingBytes / (this.bytes / elapsed);
    }
  }

  // ---- Requests -------------------------------------------------------------------------

  // A failure worth trying again: the network, or the server having a bad moment.
  class RetryableError extends Error {}

  const { csrfToken } = window.site;

  // POST (or GET when body is null) with XMLHttpRequest, for its upload progress events (fetch,
  // behind site.requestJson, reports none).
  // Resolves with the parsed JSON answer; rejects with a RetryableError or an Error whose
  // message is the server's, in plain words.
  function sendJson(url, { body = null, token = "", onProgress = null } = {}) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(body ? "POST" : "GET", url);
      xhr.setRequestHeader("Accept", "application/json");
      if (body) xhr.setRequestHeader("X-CSRFToken", token);
      if (onProgress) {
        xhr.upload.onprogress = (event) => {
          if (event.lengthComputable) onProgress(event.loaded / event.total);
        };
      }
      xhr.onerror = () => reject(new RetryableError("The connection to the server was lost."));
      xhr.ontimeout = xhr.onerror;
      xhr.onload = () => {
        let answer = null;
        try {
          answer = JSON.parse(xhr.responseText);
        } catch (ignored) {
          answer = null;
        }
        if (xhr.status >= 500) {
          reject(new RetryableError("The server had a problem."));
        } else if (xhr.status >= 200 && xhr.status < 300 && answer) {
          resolve(answer);
        } else if (answer && answer.message) {
          const error = new Error(answer.message);
          error.status = xhr.status;
          reject(error);
        } else if (xhr.status === 404) {
          reject(new Error("This dataset or upload no longer exists. Reload the page to see what is there."));
        } else if (xhr.status === 403 || !answer) {
          reject(new Error("The server did not accept this. Perhaps you were logged out: reload the page, "
            + "log in and pick the files again; what has arrived is kept."));
        } else {
          reject(new Error(`The server refused this (error ${xhr.status}).`));
        }
      };
      xhr.send(body);
    });
  }

  // ---- Collecting files -------------------------------------------------------------------
  // Each file becomes { file, path }: its path inside what the person picked, with "/" between
  // folders. The picked or dropped folder's own name is not part of the path; the folders
  // inside it are the classes.

  function isHidden(path) {
    return path.split("/").some((part) => part.startsWith("."));
  }

  function fromFolderInput(input) {
    const picked = [];
    let folderName = "";
    for (const file of input.files) {
      const parts = (file.webkitRelativePath || file.name).split("/");
      if (parts.length > 1) folderName = folderName || parts[0];
      const path = parts.length > 1 ? parts.slice(1).join("/") : parts[0];
      if (!isHidden(path)) picked.push({ file, path });
    }
    return { items: picked, name: folderName };
  }

  function fromLooseFiles(files) {
    return { items: [...files].filter((file) => !isHidden(file.name)).map((file) => ({ file, path: file.name })), name: "" };
  }

  function readEntries(reader) {
    return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
  }

  function entryFile(entry) {
    return new Promise((resolve, reject) => entry.file(resolve, reject));
  }

  async function walk(entry, found) {
    if (entry.name.startsWith(".")) return;
    if (entry.isFile) {
      found.push({ file: await entryFile(entry), fullPath: entry.fullPath });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      // readEntries gives a folder's contents a slice at a time, and nothing once done.
      for (let slice = await readEntries(reader); slice.length; slice = await readEntries(reader)) {
        for (const child of slice) await walk(child, found);
      }
    }
  }

  // One dropped folder: like picking it. Several folders: their names are the classes.
  // Loose files: no folder, so they go to the inbox.
  async function fromDrop(dataTransfer) {
    // The item list is only readable during the drop event, so take the entries before waiting.
    const entries = [...dataTransfer.items]
      .filter((item) => item.kind === "file" && item.webkitGetAsEntry)
      .map((item) => item.webkitGetAsEntry())
      .filter(Boolean);
    if (!entries.length) return fromLooseFiles(dataTransfer.files);
    const folders = entries.filter((entry) => entry.isDirectory);
    const oneFolder = entries.length === 1 && folders.length === 1;
    const found = [];
    for (const entry of entries) await walk(entry, found);
    const items = found.map(({ file, fullPath }) => {
      const parts = fullPath.replace(/^\/+/, "").split("/");
      return { file, path: (oneFolder ? parts.slice(1) : parts).join("/") };
    });
    return { items, name: oneFolder ? folders[0].name : folders.map((folder) => folder.name).join(", ") };
  }

  // ---- Cutting into batches -------------------------------------------------------------

  // In path order, so that picking the same folder again makes the same batches: the
  // server's list of batches it has then still means the same files.
  function makeBatches(items, maxFiles) {
    const sorted = [...items].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const batches = [];
    let current = null;
    for (const item of sorted) {
      if (!current || current.items.length >= maxFiles || (current.items.length && current.bytes + item.file.size > BATCH_BYTES)) {
        current = { index: batches.length, items: [], bytes: 0 };
        batches.push(current);
      }
      current.items.push(item);
      current.bytes += item.file.size;
    }
    return batches;
  }

  function describe(items, name) {
    const folders = new Set();
    let loose = 0;
    for (const { path } of items) {
      const parts = path.split("/");
      if (parts.length > 1) folders.add(parts[0]);
      else loose += 1;
    }
    const bytes = items.reduce((sum, item) => sum + item.file.size, 0);
    const text = `${name ? `“${name}”: ` : ""}${count(items.length, "file")} (${fileSize(bytes)})`;
    if (!folders.size) return `${text} with no folder: they go to the inbox.`;
    const shown = [...folders].sort().slice(0, 8);
    return `${text} in ${count(folders.size, "folder")}: ${shown.join(", ")}${folders.size > shown.length ? ", …" : ""}`
      + `${loose ? `, and ${count(loose, "file")} with no folder, for the inbox` : ""}.`;
  }

  function looseName(items) {
    const names = items.map((item) => item.path).sort();
    return names.length === 1 ? names[0] : `${names[0]} and ${names.length - 1} more`;
  }

  // A short hash of the file list (paths and sizes), so that picking the same folder again
  // continues its unfinished upload and another folder of the same name does not. Not for
  // security: crypto.subtle is missing on plain-HTTP hosts, so this is cyrb53.
  function fingerprint(items) {
    const text = items.map((item) => `${item.path}\t${item.file.size}`).sort().join("\n");
    let h1 = 0xdeadbeef, h2 = 0x41c6ce57;
    for (let i = 0; i < text.length; i += 1) {
      const c = text.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 2654435761);
      h2 = Math.imul(h2 ^ c, 1597334677);
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    return `${(h2 >>> 0).toString(16).padStart(8, "0")}${(h1 >>> 0).toString(16).padStart(8, "0")}`;
  }

  // ---- Sending a folder ----------------------------------------------------------------

  class FolderSender {
    constructor({ startUrl, token, transfer, extraFields = {}, maxFiles }) {
      Object.assign(this, { startUrl, token, transfer, extraFields, maxFiles });
      this.meter = new RateMeter();
      this.received = new Set();
      this.upload = null;
    }

    async send(items, name) {
      this.items = items;
      this.name = (name || looseName(items)).slice(0, 250);
      this.batches = makeBatches(items, this.maxFiles);
      this.totalBytes = items.reduce((sum, item) => sum + item.file.size, 0);
      window.addEventListener("beforeunload", warnBeforeLeaving);
      await this.run();
    }

    // Start (or find the earlier start of this same folder), send every batch the server
    // lacks, finish. Runs again from the top when the person presses Resume.
    async run() {
      try {
        this.meter.restart();
        this.showProgress(0);
        if (!this.upload) {
          this.upload = await this.withRetries(() => this.start());
          this.received = new Set(this.upload.received_batches);
          if (this.upload.resumed) this.noteResumed();
        } else {
          await this.withRetries(() => this.refreshState());
        }
        for (const batch of this.batches) {
          if (this.received.has(batch.index)) continue;
          await this.withRetries(() => this.sendBatch(batch), batch);
          this.received.add(batch.index);
          this.showProgress(0);
        }
        this.showProgress(0, "Every file has arrived. Handing them over to be read…");
        const finished = await this.withRetries(() => sendJson(this.upload.finish_url, this.post({})));
        window.removeEventListener("beforeunload", warnBeforeLeaving);
        window.location.assign(finished.url);
      } catch (error) {
        this.stopped(error);
      }
    }

    post(fields) {
      const body = new FormData();
      for (const [key, value] of Object.entries(fields)) body.append(key, value);
      return { body, token: this.token };
    }

    start() {
      return sendJson(this.startUrl, this.post({
        ...this.extraFields,
        folder_name: this.name,
        file_count: this.items.length,
        batch_count: this.batches.length,
        total_bytes: this.totalBytes,
        fingerprint: fingerprint(this.items),
      }));
    }

    noteResumed() {
      const arrived = this.batches.filter((batch) => this.received.has(batch.index)).length;
      const into = this.upload.dataset_name ? ` into “${this.upload.dataset_name}”` : "";
      this.continuing = `Continuing the unfinished upload of this folder${into}: `
        + `${arrived} of ${count(this.batches.length, "part")} had arrived and are not sent again. `;
    }

    sendBatch(batch) {
      const body = new FormData();
      for (const { file, path } of batch.items) {
        body.append("files", file, file.name);
        body.append("paths", path);
      }
      const sentBefore = this.meter.bytes;
      return sendJson(`${this.upload.batch_url_prefix}${batch.index}/`, {
        body,
        token: this.token,
        onProgress: (fraction) => {
          this.meter.bytes = sentBefore + fraction * batch.bytes;
          this.showProgress(fraction * batch.bytes);
        },
      });
    }

    async refreshState() {
      const state = await sendJson(this.upload.state_url);
      for (const index of state.received_batches) this.received.add(index);
      return state;
    }

    // Try again after 1, 2, 4 and 8 seconds. Before sending a batch again, ask the server
    // whether it has it: the batch may have arrived and only the answer been lost.
    async withRetries(attempt, batch = null) {
      for (let failures = 0; ; failures += 1) {
        try {
          return await attempt();
        } catch (error) {
          if (!(error instanceof RetryableError) || failures >= RETRY_DELAYS_S.length) throw error;
          const delay = RETRY_DELAYS_S[failures];
          this.showProgress(0, `${error.message} Trying again in ${count(delay, "second")}…`);
          await sleep(delay);
          if (batch) {
            try {
              await this.refreshState();
            } catch (stateError) {
              continue; // still no connection: the next attempt waits longer
            }
            if (this.received.has(batch.index)) return null;
          }
        }
      }
    }

    stopped(error) {
      this.meter.restart(); // nothing is being sent now, so no time left is shown
      this.showProgress(0);
      if (error instanceof RetryableError) {
        const arrived = this.filesArrived();
        this.transfer.error(`${error.message} ${arrived.toLocaleString("en-US")} of ${count(this.items.length, "file")} `
          + "have arrived and are kept. Check the connection, then press Resume to send the rest.");
        this.transfer.offerResume(() => this.run());
      } else {
        window.removeEventListener("beforeunload", warnBeforeLeaving);
        this.transfer.error(error.message);
        if (error.status === 409 && this.upload) this.transfer.offerResume(() => this.run());
      }
    }

    filesArrived() {
      return this.batches.filter((batch) => this.received.has(batch.index))
        .reduce((sum, batch) => sum + batch.items.length, 0);
    }

    // `inFlight` bytes of the batch being sent count as sent.
    showProgress(inFlight, note = "") {
      const done = this.batches.filter((batch) => this.received.has(batch.index));
      const files = done.reduce((sum, batch) => sum + batch.items.length, 0);
      const bytes = done.reduce((sum, batch) => sum + batch.bytes, 0) + inFlight;
      const fraction = this.totalBytes ? bytes / this.totalBytes : files / this.items.length;
      const left = files < this.items.length ? timeLeft(this.meter.secondsLeft(this.totalBytes - bytes)) : "";
      const status = `${files.toLocaleString("en-US")} of ${count(this.items.length, "file")} sent · `
        + `${fileSize(bytes)} of ${fileSize(this.totalBytes)}${left ? ` · ${left}` : ""}`;
      this.transfer.show(fraction, `${this.continuing || ""}${note || status}`);
    }
  }

  function warnBeforeLeaving(event) {
    event.preventDefault();
    event.returnValue = ""; // the browser asks "Leave site?"; the files that arrived are kept either way
  }

  // ---- The pick-or-drop widget (_folder_upload.html) ---------------------------------

  function setUpFolderWidget(widget) {
    const input = widget.querySelector(".folder-input");
    const dropZone = widget.querySelector(".drop-zone");
    const summary = widget.querySelector(".folder-summary");
    const sendButton = widget.querySelector(".folder-send");
    const transfer = new Transfer(widget.querySelector(".transfer"));
    const maxFiles = Number(widget.dataset.maxFiles);
    const maxFileBytes = Number(widget.dataset.maxFileBytes);
    let chosen = null;
    widget.hidden = false;

    function choose({ items, name }) {
      const tooLarge = items.filter((item) => item.file.size > maxFileBytes);
      const kept = items.filter((item) => item.file.size <= maxFileBytes);
      transfer.error("");
      if (!kept.length) {
        chosen = null;
        sendButton.hidden = true;
        summary.hidden = true;
        transfer.error("There are no files to send in what you picked (hidden files are left out).");
        return;
      }
      chosen = { items: kept, name };
      summary.textContent = describe(kept, name)
        + (tooLarge.length ? ` ${count(tooLarge.length, "file")} larger than ${fileSize(maxFileBytes)} are left out.` : "");
      summary.hidden = false;
      sendButton.hidden = false;
    }

    input.addEventListener("change", () => choose(fromFolderInput(input)));
    dropZone.addEventListener("dragover", (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    });
    dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
    dropZone.addEventListener("drop", async (event) => {
      event.preventDefault();
      dropZone.classList.remove("dragging");
      try {
        choose(await fromDrop(event.dataTransfer));
      } catch (error) {
        transfer.error("Some dropped files could not be read. Try picking the folder with the button instead.");
      }
    });

    sendButton.addEventListener("click", () => {
      if (!chosen) return;
      // The widget sits in a form whose fields go along (a new dataset's name and split percentages,
      // the model that classifies): data-form-fields names them.
      const form = widget.closest("form");
      const extraFields = {};
      if (form) {
        for (const field of widget.dataset.formFields.split(" ")) {
          if (form.elements[field]) extraFields[field] = form.elements[field].value;
        }
      }
      sendButton.disabled = true;
      input.disabled = true;
      const sender = new FolderSender({
        startUrl: widget.dataset.startUrl, token: csrfToken(), transfer, extraFields, maxFiles,
      });
      sender.send(chosen.items, chosen.name).finally(() => {
        sendButton.disabled = false;
        input.disabled = false;
      });
    });
  }

  // ---- Loose images on the add page: the plain form, sent like a folder ------------

  function setUpLooseImagesForm(form) {
    const input = form.querySelector("input[type=file]");
    const button = form.querySelector("button[type=submit]");
    const transfer = new Transfer(form.querySelector(".transfer"));
    form.addEventListener("submit", (event) => {
      const maxFileBytes = Number(form.dataset.maxFileBytes);
      const { items } = fromLooseFiles(input.files);
      const kept = items.filter((item) => item.file.size <= maxFileBytes);
      if (!kept.length) return; // the browser (or the server) says a file is needed
      event.preventDefault();
      button.disabled = true;
      const sender = new FolderSender({
        startUrl: form.dataset.startUrl, token: csrfToken(), transfer, maxFiles: Number(form.dataset.maxFiles),
      });
      sender.send(kept, "").finally(() => {
        button.disabled = false;
      });
    });
  }

  // ---- A zip: one request, with its upload progress ---------------------------------

  function setUpZipForm(form) {
    const fileInput = form.querySelector("input[type=file][name=file]");
    const button = form.querySelector("button[type=submit]");
    const transfer = new Transfer(form.querySelector(":scope > .transfer"));
    form.addEventListener("submit", (event) => {
      if (!fileInput.files.length) return; // the browser asks for a file
      event.preventDefault();
      const meter = new RateMeter();
      meter.restart();
      button.disabled = true;
      transfer.error("");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.upload.onprogress = (progress) => {
        if (!progress.lengthComputable) return;
        meter.bytes = progress.loaded;
        const left = timeLeft(meter.secondsLeft(progress.total - progress.loaded));
        transfer.show(progress.loaded / progress.total,
          `${fileSize(progress.loaded)} of ${fileSize(progress.total)} sent${left ? ` · ${left}` : ""}`);
      };
      xhr.upload.onload = () => transfer.show(1, "Sent. Checking the zip…");
      xhr.onerror = () => {
        button.disabled = false;
        transfer.error("The upload was interrupted. Check the connection and press Upload again.");
      };
      xhr.onload = () => {
        if (xhr.status >= 400) {
          button.disabled = false;
          transfer.error(`The server could not take this zip (error ${xhr.status}). Please try again.`);
          return;
        }
        // Accepted: the server redirected to the dataset page, and the request followed it.
        if (new URL(xhr.responseURL).pathname !== new URL(form.action).pathname) {
          window.location.assign(xhr.responseURL);
          return;
        }
        // Refused: the same page again, with the form's messages. Show that form.
        const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
        const answered = form.id && page.getElementById(form.id);
        if (!answered) {
          button.disabled = false;
          transfer.error("The server's answer could not be shown. Reload the page and try again.");
          return;
        }
        const replacement = document.importNode(answered, true);
        form.replaceWith(replacement);
        setUp(replacement);
      };
      xhr.send(new FormData(form));
    });
  }

  function setUp(root) {
    if (root.matches("[data-zip-form]")) setUpZipForm(root);
    root.querySelectorAll("[data-zip-form]").forEach(setUpZipForm);
    root.querySelectorAll(".folder-upload").forEach(setUpFolderWidget);
    if (root.matches("#loose-images-form")) setUpLooseImagesForm(root);
    root.querySelectorAll("#loose-images-form").forEach(setUpLooseImagesForm);
  }

  setUp(document.body);
})();

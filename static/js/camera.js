// The camera on the predict page: frames from getUserMedia go to the API's classify address a few
// times a second (one at a time: a frame is sent only when the answer to the last one has come), and
// the three most likely classes are shown; "Take photo" keeps a frame with what the model said.
(function () {
  "use strict";
  const card = document.getElementById("camera-card");
  if (!card || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
  card.hidden = false;
  const { el } = site;
  const video = document.getElementById("camera-video");
  const startButton = document.getElementById("camera-start");
  const photoButton = document.getElementById("camera-photo");
  const stopButton = document.getElementById("camera-stop");
  const top = document.getElementById("camera-top");
  const rate = document.getElementById("camera-rate");
  const error = document.getElementById("camera-error");
  const kept = document.getElementById("camera-kept");
  const SIDE = 320; // frames are sent at most this big: enough for any model here, quick to send
  let stream = null;
  let answered = [];

  function modelUrl() {
    const run = document.querySelector("select[name=run]");
    return card.dataset.classifyUrl.replace("/0/", `/${run.value}/`);
  }

  function frame() {
    const scale = Math.min(1, SIDE / Math.max(video.videoWidth, video.videoHeight));
    const canvas = el("canvas", { width: Math.round(video.videoWidth * scale), height: Math.round(video.videoHeight * scale) });
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL("image/jpeg", 0.85);
  }

  async function classify(dataUrl, name) {
    const { ok, answer, loggedOut } = await site.requestJson(modelUrl(), {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ images: [{ name, data: dataUrl.split(",")[1] }] }),
    });
    if (loggedOut) throw new Error("You have been logged out: log in again to use the camera.");
    if (!ok) throw new Error(answer.message || "The picture could not be classified.");
    return answer.results[0];
  }

  function words(result) {
    if (result.error) return result.error;
    const sure = `${Math.round(100 * result.confidence)} % sure`;
    return result.not_sure ? `${result.why_not_sure} (its best guess: ${result.class}, ${sure})` : `${result.class} (${sure})`;
  }

  function showTop(result) {
    const ranked = Object.entries(result.probabilities || {}).sort((a, b) => b[1] - a[1]).slice(0, 3);
    top.replaceChildren(...ranked.map(([name, p]) => el("tr", {},
      el("td", { text: name }),
      el("td", { className: "barcell" }, el("div", { className: "bar", style: `width: ${Math.round(100 * p)}%` })),
      el("td", { className: "num", text: `${Math.round(100 * p)} %` }))));
    top.dataset.best = result.not_sure ? "" : result.class;
    top.title = words(result);
  }

  async function loop() {
    while (stream) {
      const started = performance.now();
      try {
        if (video.videoWidth) {
          showTop(await classify(frame(), "camera.jpg"));
          error.hidden = true;
          answered = [...answered.slice(-9), performance.now()];
          if (answered.length > 1) {
            const perSecond = (answered.length - 1) / ((answered[answered.length - 1] - answered[0]) / 1000);
            rate.textContent = `${perSecond.toFixed(1)} answers a second`;
          }
        }
      } catch (problem) {
        error.textContent = problem.message;
        error.hidden = false;
      }
      // About five frames a second at most, so the server is not asked more than it needs.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 200 - (performance.now() - started))));
    }
  }

  startButton.addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    } catch (problem) {
      error.textContent = "The camera could not be opened: allow this page to use it, or check that one is connected.";
      error.hidden = false;
      return;
    }
    video.srcObject = stream;
    startButton.hidden = true;
    stopButton.hidden = false;
    photoButton.disabled = false;
    loop();
  });

  stopButton.addEventListener("click", () => {
    for (const track of stream ? stream.getTracks() : []) track.stop();
    stream = null;
    video.srcObject = null;
    startButton.hidden = false;
    stopButton.hidden = true;
    photoButton.disabled = true;
  });

  photoButton.addEventListener("click", async () => {
    const picture = frame();
    const name = `photo-${kept.children.length + 1}.jpg`;
    const caption = el("figcaption", { text: "Classifying…" });
    kept.prepend(el("figure", { className: "camera-photo" },
      el("a", { href: picture, download: name }, el("img", { src: picture, alt: name })), caption));
    document.getElementById("camera-kept-heading").hidden = false;
    try {
      caption.textContent = words(await classify(picture, name));
    } catch (problem) {
      caption.textContent = problem.message;
    }
  });
})();

// musicgan's playable piano roll: draws the notes on a canvas, plays the piece's audio (the file
// the server already serves to the page, never a second copy), moves a playhead in step with
// it, seeks where the roll is clicked, and saves the drawing as a PNG.
// Runs as a Gradio gr.HTML js_on_load script: `element` is the component's root element.
(function () {
  const MIN_BAR_PX = 36;  // narrower than this, the roll scrolls sideways instead of squeezing bars

  function setup(fresh) {
    const root = element.querySelector(".mg-roll");
    if (!root || !root.dataset.piece) return;
    let piece;
    try { piece = JSON.parse(decodeURIComponent(root.dataset.piece)); } catch (e) { return; }
    const box = root.querySelector(".mg-scroll");
    const canvas = root.querySelector("canvas");
    const audio = root.querySelector("audio");
    const button = root.querySelector(".mg-play");
    const clock = root.querySelector(".mg-time");
    const save = root.querySelector(".mg-save");
    const ctx = canvas.getContext("2d");
    const notes = piece.notes;  // [pitch, start_step, end_step, velocity]
    const low = piece.low - 1, high = piece.high + 1;
    const total = Math.max(piece.steps, 1);
    audio.src = piece.audio;

    function size() {
      const ratio = window.devicePixelRatio || 1;
      const bars = Math.max(piece.bars.length, 1);
      const w = Math.max(box.clientWidth || 800, Math.ceil(bars * MIN_BAR_PX)), h = 260;
      canvas.width = w * ratio; canvas.height = h * ratio;
      canvas.style.width = w + "px"; canvas.style.height = h + "px";
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      return [w, h];
    }
    let [W, H] = size();
    const x = step => step / total * W;
    const y = pitch => H - (pitch - low + 1) / (high - low + 1) * H;
    const rowH = () => H / (high - low + 1);

    function draw(now) {
      ctx.clearRect(0, 0, W, H);
      ctx.fillStyle = "#f7f7fb"; ctx.fillRect(0, 0, W, H);
      for (let p = low; p <= high; p++) if (p % 12 === 0) {
        ctx.fillStyle = "#e6e6ef"; ctx.fillRect(0, y(p), W, rowH());
      }
      ctx.strokeStyle = "#c8c8d4"; ctx.lineWidth = 1;
      for (const s of piece.bars) {  // where the piece's own bars begin (its metre, and any change of it)
        ctx.beginPath(); ctx.moveTo(x(s) + 0.5, 0); ctx.lineTo(x(s) + 0.5, H); ctx.stroke();
      }
      const step = now / piece.seconds_per_step;
      for (const [i, [pitch, start, end, velocity]] of notes.entries()) {
        const playing = start <= step && step < end;
        const given = piece.given && piece.given[i];  // notes the visitor gave (an opening, a melody), in their own colour
        ctx.fillStyle = playing ? "#f6a01a" : given ? `rgba(122, 92, 199, ${0.45 + 0.55 * velocity / 127})`
                                                    : `rgba(0, 121, 140, ${0.45 + 0.55 * velocity / 127})`;
        ctx.fillRect(x(start) + 0.5, y(pitch), Math.max(x(end) - x(start) - 1, 1), Math.max(rowH() - 1, 1));
      }
      ctx.strokeStyle = "#d1495b"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(x(step), 0); ctx.lineTo(x(step), H); ctx.stroke();
      const fmt = s => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
      clock.textContent = `${fmt(now)} / ${fmt(piece.steps * piece.seconds_per_step)}`;
      root.dataset.playhead = step.toFixed(2);
    }
    function follow(now) {  // keep the playhead in view when the roll scrolls
      const at = x(now / piece.seconds_per_step);
      if (at < box.scrollLeft || at > box.scrollLeft + box.clientWidth - 20) box.scrollLeft = Math.max(at - 40, 0);
    }
    function frame() {
      draw(audio.currentTime); follow(audio.currentTime);
      if (!audio.paused) requestAnimationFrame(frame);
    }
    button.onclick = () => { if (audio.paused) audio.play(); else audio.pause(); };
    audio.onplay = () => { button.textContent = "❚❚ Pause"; requestAnimationFrame(frame); };
    audio.onpause = audio.onended = () => { button.textContent = "▶ Play"; draw(audio.currentTime); };
    audio.onseeked = () => draw(audio.currentTime);
    canvas.onclick = event => {
      const rect = canvas.getBoundingClientRect();
      audio.currentTime = (event.clientX - rect.left) / rect.width * total * piece.seconds_per_step;
      draw(audio.currentTime);
    };
    save.onclick = () => {  // the drawing as it is, without the playhead
      draw(0);
      save.href = canvas.toDataURL("image/png");
      draw(audio.currentTime);
    };
    window.addEventListener("resize", () => { [W, H] = size(); draw(audio.currentTime); });
    draw(0);
    // a new piece: bring it into view (on a phone the controls above it fill the screen)
    if (fresh) root.scrollIntoView({behavior: "smooth", block: "nearest"});
  }
  setup(false);
  if (typeof watch === "function") watch("value", () => setup(true));
})();

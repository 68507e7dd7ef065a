// gapprof report: hover tooltips from each mark's <title>, and zoom and pan of the step timelines. No libraries.
"use strict";
window.addEventListener("error", (event) => { document.body.dataset.error = String(event.message); });

const tip = document.getElementById("tip");
document.addEventListener("mousemove", (event) => {
  let title = null;  // the title of the innermost mark under the pointer that has one
  for (let node = event.target; node instanceof SVGElement && !title; node = node.parentNode) {
    title = node.querySelector(":scope > title");
  }
  if (!title) { tip.hidden = true; return; }
  tip.textContent = title.textContent;
  tip.hidden = false;
  tip.style.left = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8) + "px";
  tip.style.top = (event.clientY + 16) + "px";
});

function niceStep(span) {
  const raw = span / 8, power = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
}

function setUpTimeline(box) {
  const plot = box.querySelector(".plot"), steps = box.querySelector("svg.steps"), axis = box.querySelector("svg.axis");
  const width = steps.viewBox.baseVal.width, height = steps.viewBox.baseVal.height;
  const wallMs = Number(box.dataset.wallMs);
  let x0 = 0, span = width;

  function draw() {
    x0 = Math.max(0, Math.min(x0, width - span));
    steps.setAttribute("viewBox", `${x0} 0 ${span} ${height}`);
    const pixels = axis.getBoundingClientRect().width || width;  // the axis is drawn in pixels, never stretched
    const fromMs = (x0 / width) * wallMs, toMs = ((x0 + span) / width) * wallMs, step = niceStep(toMs - fromMs);
    const digits = Math.max(0, -Math.floor(Math.log10(step)));
    let marks = "";
    for (let t = Math.ceil(fromMs / step) * step; t <= toMs + 1e-12; t += step) {
      const x = ((t - fromMs) / (toMs - fromMs)) * pixels;
      marks += `<line x1="${x}" x2="${x}" y1="0" y2="5" stroke="#5b6372"/>` +
               `<text x="${x}" y="15" text-anchor="middle">${t.toFixed(digits)} ms</text>`;
    }
    axis.innerHTML = marks;
  }

  function zoom(factor, at) {  // at: the fraction across the visible plot that stays put
    const newSpan = factor === 0 ? width : Math.min(width, Math.max(width / 20000, span / factor));
    x0 = factor === 0 ? 0 : x0 + (span - newSpan) * at;
    span = newSpan;
    draw();
  }

  box.querySelectorAll("button[data-zoom]").forEach((button) =>
    button.addEventListener("click", () => zoom(Number(button.dataset.zoom), 0.5)));
  plot.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = plot.getBoundingClientRect();
    zoom(event.deltaY < 0 ? 1.25 : 0.8, (event.clientX - rect.left) / rect.width);
  }, { passive: false });
  let dragFrom = null;
  plot.addEventListener("mousedown", (event) => { dragFrom = { x: event.clientX, x0 }; });
  window.addEventListener("mouseup", () => { dragFrom = null; });
  window.addEventListener("mousemove", (event) => {
    if (!dragFrom) return;
    x0 = dragFrom.x0 - ((event.clientX - dragFrom.x) / plot.getBoundingClientRect().width) * span;
    draw();
  });
  plot.addEventListener("dblclick", () => zoom(0, 0));
  window.addEventListener("resize", draw);
  window.addEventListener("beforeprint", draw);
  draw();
}

document.querySelectorAll(".timeline").forEach(setUpTimeline);
document.body.dataset.ready = "1";

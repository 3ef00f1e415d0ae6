// interp pose editor: the body of a gr.HTML js_on_load (Gradio 6), which runs with `element`,
// `props`, `trigger` and `watch` in scope. props.value is
//   {image: data URL | "", pose: OpenPose JSON, target: "keyframe:<id>"|"frame:<n>", label, source}.
// Joints are dragged, added (pick a missing joint, then click where it goes) and removed
// (double-click, or select + "Remove joint"). Every finished edit writes props.value with
// source "user"; the server validates the pose and shows its JSON.
(function () {
  "use strict";
  const NAMES = ["nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow",
    "l_wrist", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye",
    "r_ear", "l_ear"];
  // OpenPose body limbs (0-based) and its 18-colour palette, as controlnet_aux draws them.
  const LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10],
    [1, 11], [11, 12], [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17]];
  const COLOURS = ["#ff0000", "#ff5500", "#ffaa00", "#ffff00", "#aaff00", "#55ff00", "#00ff00",
    "#00ff55", "#00ffaa", "#00ffff", "#00aaff", "#0055ff", "#0000ff", "#5500ff", "#aa00ff",
    "#ff00ff", "#ff00aa", "#ff0055"];
  // A standing person, as fractions of the canvas (the person's right is the image's left).
  const TEMPLATE = [[0.5, 0.2], [0.5, 0.3], [0.4, 0.3], [0.37, 0.45], [0.35, 0.58], [0.6, 0.3],
    [0.63, 0.45], [0.65, 0.58], [0.45, 0.58], [0.45, 0.75], [0.45, 0.92], [0.55, 0.58],
    [0.55, 0.75], [0.55, 0.92], [0.48, 0.18], [0.52, 0.18], [0.46, 0.19], [0.54, 0.19]];
  const SVG_NS = "http://www.w3.org/2000/svg";

  const root = element.querySelector(".pe-root");
  const stage = root.querySelector(".pe-stage");
  const missing = root.querySelector(".pe-missing");
  const info = root.querySelector(".pe-info");
  let state = null;          // {width, height, people: [[[x, y, c] x 18], ...], image}
  let selected = null;       // {p, k}
  let drag = null;           // {p, k, id}
  let svg = null;

  function parse(value) {
    if (!value || !value.pose) return null;
    const pose = value.pose;
    const people = (pose.people || []).map((person) => {
      const flat = person.pose_keypoints_2d || [];
      return NAMES.map((_, k) => [flat[3 * k] || 0, flat[3 * k + 1] || 0, flat[3 * k + 2] || 0]);
    });
    return {width: pose.canvas_width, height: pose.canvas_height, people: people,
      image: value.image || "", label: value.label || ""};
  }

  function toJSON() {
    return {canvas_width: state.width, canvas_height: state.height,
      people: state.people.map((p) => ({pose_keypoints_2d: [].concat(...p)}))};
  }

  function commit() {
    props.value = Object.assign({}, props.value, {pose: toJSON(), source: "user"});
  }

  function el(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    return node;
  }

  function radius() { return Math.max(state.width, state.height) * 0.018; }

  function draw() {
    // Rebuild the drawing (after a load or a structural edit); listeners stay on the svg.
    if (!state) {
      svg = null;
      stage.innerHTML = '<div class="pe-empty">Upload both images, then choose whose pose to edit.</div>';
      info.textContent = "";
      fillMissing();
      return;
    }
    if (!svg) {
      stage.innerHTML = "";
      svg = el("svg", {class: "pe-svg", preserveAspectRatio: "xMidYMid meet"});
      svg.addEventListener("pointerdown", onDown);
      svg.addEventListener("pointermove", onMove);
      svg.addEventListener("pointerup", onUp);
      svg.addEventListener("pointercancel", onUp);
      svg.addEventListener("dblclick", onDouble);
      stage.appendChild(svg);
    }
    svg.setAttribute("viewBox", `0 0 ${state.width} ${state.height}`);
    svg.replaceChildren(state.image
      ? el("image", {href: state.image, x: 0, y: 0, width: state.width, height: state.height,
        preserveAspectRatio: "none", opacity: 0.75})
      : el("rect", {x: 0, y: 0, width: state.width, height: state.height, fill: "#333"}));
    const r = radius();
    state.people.forEach((person, p) => {
      LIMBS.forEach(([i, j], n) => {
        if (person[i][2] > 0 && person[j][2] > 0) {
          svg.appendChild(el("line", {x1: person[i][0], y1: person[i][1], x2: person[j][0],
            y2: person[j][1], stroke: COLOURS[n], "stroke-width": r * 0.8,
            "stroke-opacity": 0.8, class: "pe-limb", "data-limb": `${p}-${n}`}));
        }
      });
      person.forEach((kp, k) => {
        if (kp[2] <= 0) return;
        const dot = el("circle", {cx: kp[0], cy: kp[1], r: r, fill: COLOURS[k], stroke: "#000",
          "stroke-width": r * 0.3, class: "pe-joint", "data-person": p, "data-joint": k,
          "data-name": NAMES[k]});
        dot.appendChild(el("title", {})).textContent = `person ${p + 1}: ${NAMES[k]}`;
        svg.appendChild(dot);
      });
    });
    highlight();
  }

  function highlight() {
    // Show the selection in place (no rebuild, so a double-click lands on the same joint).
    const r = radius();
    svg.querySelectorAll(".pe-joint").forEach((dot) => {
      const on = selected && +dot.dataset.person === selected.p && +dot.dataset.joint === selected.k;
      dot.setAttribute("r", on ? r * 1.5 : r);
      dot.setAttribute("stroke", on ? "#fff" : "#000");
    });
    info.textContent = `${state.label} · ${state.people.length} person(s) · canvas ` +
      `${state.width}×${state.height}` + (selected ? ` · selected: ${NAMES[selected.k]}` : "");
    fillMissing();
  }

  function fillMissing() {
    const p = selected ? selected.p : 0;
    const person = state && state.people[p];
    missing.innerHTML = "";
    missing.appendChild(new Option("add a missing joint…", ""));
    if (!person) { missing.disabled = true; return; }
    missing.disabled = false;
    person.forEach((kp, k) => { if (kp[2] <= 0) missing.appendChild(new Option(NAMES[k], k)); });
  }

  function point(event) {
    const pt = svg.createSVGPoint();
    pt.x = event.clientX; pt.y = event.clientY;
    const p = pt.matrixTransform(svg.getScreenCTM().inverse());
    return [Math.min(Math.max(p.x, 0), state.width), Math.min(Math.max(p.y, 0), state.height)];
  }

  function round(v) { return Math.round(v * 100) / 100; }

  function onDown(event) {
    const target = event.target;
    if (target.classList.contains("pe-joint")) {
      selected = {p: +target.dataset.person, k: +target.dataset.joint};
      const kp = state.people[selected.p][selected.k];
      const [px, py] = point(event);   // keep the grab offset: the joint moves by the drag
      drag = {p: selected.p, k: selected.k, id: event.pointerId, moved: false,
        dx: kp[0] - px, dy: kp[1] - py};
      svg.setPointerCapture(event.pointerId);
      event.preventDefault();
      highlight();
      return;
    }
    const k = missing.value === "" ? null : +missing.value;
    if (k !== null && state.people.length) {
      const p = selected ? selected.p : 0;
      const [x, y] = point(event);
      state.people[p][k] = [round(x), round(y), 1];
      selected = {p: p, k: k};
      draw();
      commit();
    } else {
      selected = null;
      highlight();
    }
  }

  function onMove(event) {
    if (!drag || event.pointerId !== drag.id) return;
    const [x, y] = point(event);
    const kp = state.people[drag.p][drag.k];
    kp[0] = round(Math.min(Math.max(x + drag.dx, 0), state.width));
    kp[1] = round(Math.min(Math.max(y + drag.dy, 0), state.height));
    drag.moved = true;
    const dot = svg.querySelector(`.pe-joint[data-person="${drag.p}"][data-joint="${drag.k}"]`);
    if (dot) { dot.setAttribute("cx", kp[0]); dot.setAttribute("cy", kp[1]); }
    LIMBS.forEach(([i, j], n) => {
      const line = svg.querySelector(`.pe-limb[data-limb="${drag.p}-${n}"]`);
      if (!line) return;
      if (i === drag.k) { line.setAttribute("x1", kp[0]); line.setAttribute("y1", kp[1]); }
      if (j === drag.k) { line.setAttribute("x2", kp[0]); line.setAttribute("y2", kp[1]); }
    });
  }

  function onUp(event) {
    if (!drag || event.pointerId !== drag.id) return;
    const moved = drag.moved;
    drag = null;
    if (moved) commit();
  }

  function onDouble(event) {
    // The captured pointer makes the svg the event target: look at what is under the pointer.
    const target = document.elementFromPoint(event.clientX, event.clientY) || event.target;
    if (!target.classList.contains("pe-joint")) return;
    removeJoint(+target.dataset.person, +target.dataset.joint);
  }

  function removeJoint(p, k) {
    state.people[p][k] = [0, 0, 0];
    selected = null;
    draw();
    commit();
  }

  function act(name) {
    if (!state) return;
    if (name === "add-person") {
      state.people.push(TEMPLATE.map(([fx, fy]) =>
        [round(fx * state.width), round(fy * state.height), 1]));
      selected = {p: state.people.length - 1, k: 1};
    } else if (name === "remove-person") {
      if (!state.people.length) return;
      state.people.splice(selected ? selected.p : state.people.length - 1, 1);
      selected = null;
    } else if (name === "remove-joint") {
      if (!selected) return;
      removeJoint(selected.p, selected.k);
      return;
    }
    draw();
    commit();
  }

  root.querySelectorAll("[data-act]").forEach((button) =>
    button.addEventListener("click", () => act(button.dataset.act)));

  function load() {
    if (drag) return;   // a server echo while dragging would undo the drag
    const incoming = parse(props.value);
    if (incoming && state && props.value.source === "user" &&
        JSON.stringify(toJSON()) === JSON.stringify(props.value.pose)) return;
    if (!incoming || !state || incoming.image !== state.image) selected = null;
    state = incoming;
    draw();
  }

  watch("value", load);
  load();
})();

// The page of `alexnet serve`: one image -> top-5 bars, nearest training images, conv1 maps,
// the occlusion map.
"use strict";
const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem("alexnet-key") || "";
let hasIndex = false;
let sizes = { image: 1, input: 1 };  // stored image side and model input side (/v1/model)
let current = null;  // the uploaded file, for a change of layer
const COLORS = ["#e6194b", "#3cb44b", "#b59a00", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"];
const columns = () => (window.innerWidth < 700 ? 8 : 16);  // pictures' tiles per row

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (key) headers["Authorization"] = "Bearer " + key;
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 401) {
    $("key-box").hidden = false;
    throw new Error("this server needs an API key");
  }
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

async function imageURL(path, options) {
  const r = await api(path, options);
  return URL.createObjectURL(await r.blob());
}

function post(file) {
  return { method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file };
}

async function loadModel() {
  const m = await (await api("/v1/model")).json();
  hasIndex = m.index !== null;
  sizes = { image: m.image_size || m.input_size, input: m.input_size };
  const select = $("layer");
  select.innerHTML = "";
  for (const name of m.layers || []) select.add(new Option(name, name));
  const convs = (m.layers || []).filter((n) => n.startsWith("conv"));
  if (convs.length) select.value = convs[convs.length - 1];
  $("units-card").hidden = !(m.layers || []).length;
  $("model-name").textContent = m.name;
  $("model-info").textContent = `${m.num_classes} classes · input ${m.input_size} px · ` +
    `features: ${m.feature_layer}, ${m.feature_dim}-d` +
    (hasIndex ? ` · index: ${m.index.count} ${m.index.split ?? "folder"} images` : "");
  $("nb-layer").textContent = `${m.feature_layer} distance (Fig. 4)`;
  $("kernels").src = await imageURL("/v1/kernels.png?columns=" + columns());
  if (!hasIndex) $("neighbors").innerHTML = '<p class="muted">no index (start with --index FEATS)</p>';
}

function showTop(pred) {
  const list = $("top5");
  list.innerHTML = "";
  for (const t of pred.top) {
    const li = document.createElement("li");
    const pct = (100 * t.prob).toFixed(1);
    li.innerHTML = '<span class="name"></span><span class="bar"><span></span></span><span class="pct"></span>';
    li.querySelector(".name").textContent = t.class;
    li.querySelector(".bar span").style.width = Math.max(0.5, 100 * t.prob) + "%";
    li.querySelector(".pct").textContent = pct + " %";
    list.appendChild(li);
  }
}

async function showNeighbors(file) {
  const box = $("neighbors");
  const res = await (await api("/v1/neighbors?k=8", post(file))).json();
  box.innerHTML = "";
  for (const n of res.results[0].neighbors) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.className = "pixels";
    img.alt = n.label ?? n.path;
    img.src = await imageURL(n.image);
    const cap = document.createElement("figcaption");
    cap.textContent = `${n.label ?? n.path} · ${n.distance.toPrecision(3)}`;
    fig.append(img, cap);
    box.appendChild(fig);
  }
}

// The model input (the centre crop of the stored image) with a cell per occluded square's
// centre: red where covering the square lowers p(top class), blue where it raises it.
// The model input, approximately: the centre crop of the uploaded image, on a canvas.
async function drawInput(canvas, gray) {
  const img = new Image();
  img.src = $("preview").src;
  await img.decode();
  const ctx = canvas.getContext("2d"), side = canvas.width;
  const shorter = Math.min(img.naturalWidth, img.naturalHeight);
  const crop = shorter * Math.min(1, sizes.input / sizes.image);
  ctx.filter = gray;
  ctx.drawImage(img, (img.naturalWidth - crop) / 2, (img.naturalHeight - crop) / 2, crop, crop,
    0, 0, side, side);
  ctx.filter = "none";
  return ctx;
}

async function showOcclusion(file) {
  const res = await (await api("/v1/occlusion", post(file))).json();
  const canvas = $("occlusion"), side = canvas.width;
  const ctx = await drawInput(canvas, "grayscale(70%)");
  const k = side / res.input_size, flat = res.drop.flat();
  const top = Math.max(...flat.map(Math.abs)) || 1;
  res.drop.forEach((row, i) => row.forEach((d, j) => {
    const a = (0.75 * Math.abs(d) / top).toFixed(3);
    ctx.fillStyle = d > 0 ? `rgba(215,35,35,${a})` : `rgba(35,90,215,${a})`;
    const at = (n) => (n * res.stride + res.patch / 2 - res.stride / 2) * k;
    ctx.fillRect(at(j), at(i), res.stride * k, res.stride * k);
  }));
  canvas.hidden = false;
  $("occ-text").textContent = `${res.class} (p = ${res.prob.toPrecision(3)}): red, covering ` +
    `that ${res.patch} px square lowers p, by up to ${Math.max(...flat).toPrecision(3)}; ` +
    `blue raises it (stride ${res.stride} px)`;
  window.occlusion = res;  // for the page test
}

// The k units of the chosen layer that fire most, each box the input patch it sees.
async function showUnits(file) {
  const layer = $("layer").value;
  if (!layer || !file) return;
  const res = await (await api("/v1/units?k=8&layer=" + encodeURIComponent(layer), post(file))).json();
  const canvas = $("units");
  const ctx = await drawInput(canvas, "grayscale(40%)");
  const k = canvas.width / res.input_size, list = $("unit-list");
  list.innerHTML = "";
  res.units.forEach((u, n) => {
    const [x0, y0, x1, y1] = u.box, color = COLORS[n % COLORS.length];
    ctx.strokeStyle = color;
    ctx.lineWidth = 3;
    ctx.strokeRect(x0 * k + 1.5, y0 * k + 1.5, (x1 - x0) * k - 3, (y1 - y0) * k - 3);
    const li = document.createElement("li");
    li.style.color = color;
    li.textContent = `unit ${u.unit} · ${u.activation.toPrecision(3)} at (${u.y}, ${u.x})`;
    list.appendChild(li);
  });
  canvas.hidden = false;
  $("units-text").textContent = `${res.layer}: receptive field ${res.receptive_field} px, ` +
    `${res.jump} px between neighbouring units`;
  window.units = res;  // for the page test
}

async function run(file) {
  current = file;
  if (!file) return;
  $("status").textContent = "thinking…";
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  $("drop-text").textContent = file.name + " (choose another)";
  try {
    const res = await (await api("/v1/predict?topk=5", post(file))).json();
    showTop(res.predictions[0]);
    const jobs = [imageURL("/v1/conv1?columns=" + columns(), post(file)).then((u) => {
      $("maps").src = u; $("maps").hidden = false; $("maps-empty").hidden = true;
    })];
    jobs.push(showOcclusion(file));
    jobs.push(showUnits(file));
    if (hasIndex) jobs.push(showNeighbors(file));
    await Promise.all(jobs);
    $("status").textContent = "";
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
  } catch (err) {
    $("status").textContent = "error: " + err.message;
  }
}

$("file").addEventListener("change", (e) => run(e.target.files[0]));
$("layer").addEventListener("change", () => showUnits(current).catch((err) => {
  $("status").textContent = "error: " + err.message;
}));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over"); run(e.dataTransfer.files[0]);
});
$("key-save").addEventListener("click", () => {
  key = $("key").value; sessionStorage.setItem("alexnet-key", key);
  $("key-box").hidden = true; loadModel().catch((e) => { $("model-info").textContent = e.message; });
});
loadModel().catch((e) => { $("model-info").textContent = "error: " + e.message; });

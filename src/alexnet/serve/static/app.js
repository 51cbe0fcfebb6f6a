// The page of `alexnet serve`: one image -> top-5 bars, nearest training images, conv1 maps.
"use strict";
const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem("alexnet-key") || "";
let hasIndex = false;
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
  $("model-name").textContent = m.name;
  $("model-info").textContent = `${m.num_classes} classes · input ${m.input_size} px · ` +
    `features ${m.feature_dim}-d` + (hasIndex ? ` · index: ${m.index.count} ${m.index.split} images` : "");
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
    img.alt = n.label;
    img.src = await imageURL(n.image);
    const cap = document.createElement("figcaption");
    cap.textContent = `${n.label} · ${n.distance.toPrecision(3)}`;
    fig.append(img, cap);
    box.appendChild(fig);
  }
}

async function run(file) {
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
    if (hasIndex) jobs.push(showNeighbors(file));
    await Promise.all(jobs);
    $("status").textContent = "";
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
  } catch (err) {
    $("status").textContent = "error: " + err.message;
  }
}

$("file").addEventListener("change", (e) => run(e.target.files[0]));
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

// The public page: plain JavaScript against the HTTP/JSON API of the same origin (no build).
"use strict";

const SERVICES = (document.querySelector('meta[name="vocreg-services"]').content || "")
  .split(",").filter(Boolean);
const has = (name) => SERVICES.includes(name);

const RESULTS = {
  VERIFICATION_RESULT_VALID: ["有效", "valid"],
  VERIFICATION_RESULT_INVALIDATED: ["已作废", "invalid"],
  VERIFICATION_RESULT_WITHDRAWN: ["证书数据已撤销", "invalid"],
  VERIFICATION_RESULT_NOT_FOUND: ["未查询到该证书：证书编号或持证人姓名不符", "missing"],
};
const REASONS = {
  INVALIDATION_REASON_INELIGIBLE_CANDIDATE: "考生不符合报考条件",
  INVALIDATION_REASON_EXAM_MISCONDUCT: "考试违纪舞弊",
  INVALIDATION_REASON_NON_STANDARD_MARKING: "阅卷评分不规范",
  INVALIDATION_REASON_QUESTION_LEAK: "试题泄露",
  INVALIDATION_REASON_OUT_OF_SCOPE_EVALUATION: "超范围评价",
  INVALIDATION_REASON_FRAUD: "弄虚作假",
  INVALIDATION_REASON_DATA_WITHDRAWN: "撤销上传证书数据",
};
const LEVELS = { 1: "一级/高级技师", 2: "二级/技师", 3: "三级/高级工", 4: "四级/中级工", 5: "五级/初级工" };
const INSTITUTION_STATUS = {
  INSTITUTION_STATUS_ACTIVE: "正常", INSTITUTION_STATUS_SUSPENDED: "暂停评价（整改中）",
  INSTITUTION_STATUS_TERMINATED: "已终止备案",
};
const KINDS = {
  "filing.InstitutionFiled": "备案", "filing.FilingRenewed": "备案延续",
  "filing.FilingTerminated": "终止备案", "certificates.CertificatesInvalidated": "证书作废",
  "certificates.CertificatesWithdrawn": "撤销证书数据", "inspection.SanctionDecided": "处理决定",
  "inspection.DecisionReversed": "处理决定撤销", "grading.GradePublished": "信用等级公布",
  "grading.GradeRevised": "信用等级修订",
};
const GRADES = { GRADE_A: "A", GRADE_B: "B", GRADE_C: "C", GRADE_D: "D", GRADE_UNGRADED: "暂不评级" };
const TIERS = {  // seed 001 ch.6 art.1-4
  SANCTION_TIER_RESULTS_VOID: "评价结果无效、证书作废", SANCTION_TIER_INTERVIEW: "约谈",
  SANCTION_TIER_WARNING: "警告并限期整改（暂停评价）", SANCTION_TIER_TERMINATION: "终止备案",
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function pairs(rows) {
  return el("dl", {}, rows.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
}

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status; this.body = body; this.retryAfter = retryAfter;
  }
}

async function api(path, options) {
  const answer = await fetch(path, Object.assign({ headers: { "Accept": "application/json" } },
    options || {}));
  let body = null;
  try { body = await answer.json(); } catch (e) { body = null; }
  if (!answer.ok) throw new ApiError(answer.status, body, answer.headers.get("Retry-After"));
  return body || {};
}

function explain(error) {
  if (error instanceof ApiError) {
    if (error.status === 429) return `查询过于频繁，请 ${error.retryAfter || "稍后"} 秒后再试。`;
    if (error.status === 400) return `输入有误：${error.message}`;
    if (error.status >= 500) return "服务暂时不可用，请稍后再试。";
    return error.message;
  }
  return "无法连接服务，请检查网络后重试。";
}

function show(target, ...nodes) {
  target.replaceChildren(...nodes);
}

function fail(target, error) {
  show(target, el("p", { class: "error", role: "alert" }, explain(error)));
}

function required(form, names) {
  let first = null;
  for (const name of names) {
    const input = form.elements[name];
    const empty = !input.value.trim();
    input.setAttribute("aria-invalid", empty ? "true" : "false");
    if (empty && !first) first = input;
  }
  if (first) first.focus();
  return first === null;
}

// A unified social credit code (GB 32100-2015): its shape and its check character (weights
// 3^i mod 31), so a mistyped code is refused here and not answered "nothing published".
const USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY";

function usccValid(code) {
  if (!/^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$/.test(code)) return false;
  let sum = 0, weight = 1;
  for (let i = 0; i < 17; i++) { sum += USCC_CHARS.indexOf(code[i]) * weight; weight = weight * 3 % 31; }
  return USCC_CHARS[(31 - sum % 31) % 31] === code[17];
}

// --- the decision log: inclusion checked in the browser (RFC 9162 §2.1.3.2) --------------------
const b64 = (text) => Uint8Array.from(atob(text || ""), (c) => c.charCodeAt(0));
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

async function sha256(...parts) {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const data = new Uint8Array(size);
  let at = 0;
  for (const part of parts) { data.set(part, at); at += part.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

async function inclusionRoot(entryJson, index, size, path) {
  let fn = BigInt(index), sn = BigInt(size) - 1n;
  let r = await sha256(Uint8Array.of(0), new TextEncoder().encode(entryJson));
  for (const p of path) {
    if (sn === 0n) return null;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(Uint8Array.of(1), p, r);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = await sha256(Uint8Array.of(1), r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

async function headSignatureValid(head, publicKeyPem) {
  // RFC 6962 §3.5 TreeHeadSignature, Ed25519; where the browser has no Ed25519, null.
  try {
    const der = b64(publicKeyPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""));
    const key = await crypto.subtle.importKey("spki", der, { name: "Ed25519" }, false, ["verify"]);
    const signed = new Uint8Array(50);
    const view = new DataView(signed.buffer);
    signed[0] = 0; signed[1] = 1;
    view.setBigUint64(2, BigInt(head.timestamp_ms || 0));
    view.setBigUint64(10, BigInt(head.tree_size || 0));
    signed.set(b64(head.root_hash), 18);
    return await crypto.subtle.verify("Ed25519", key, b64(head.signature), signed);
  } catch (e) {
    return null;
  }
}

let logKey = null;

async function checkEntry(entry) {
  const index = Number(entry.leaf_index || 0);
  const proof = await api(`/v1/log/entries/${index}/proof`);
  const size = Number(proof.tree_size || 0);
  if (!window.crypto || !crypto.subtle) {
    return el("p", { class: "proof" }, `记录于日志第 ${index + 1} 条（本页面不能在非安全连接中核验）。`);
  }
  const root = await inclusionRoot(proof.entry.entry_json, index, size,
    (proof.audit_path || []).map(b64));
  const included = root !== null && equal(root, b64(proof.head.root_hash));
  const signed = logKey ? await headSignatureValid(proof.head, logKey) : null;
  if (!included) {
    return el("p", { class: "proof failed", role: "alert" }, "核验失败：该记录与日志树不符。");
  }
  const signature = signed === true ? "，树头签名有效" : signed === false ? "，但树头签名无效" : "";
  return el("p", { class: signed === false ? "proof failed" : "proof" },
    `已核验：该记录是公开决定日志第 ${index + 1} 条，包含于共 ${size} 条记录的日志树中${signature}。`,
    el("br"), el("small", {}, "树根 SHA-256：", el("code", {}, hex(b64(proof.head.root_hash)))));
}

// The log keeps UTC (RFC 3339); the public reads Beijing time.
const BEIJING = new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", year: "numeric",
  month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

function beijing(at) {  // an RFC 3339 text or milliseconds since the epoch
  const when = new Date(at || "");
  if (Number.isNaN(when.getTime())) return at;
  const p = Object.fromEntries(BEIJING.formatToParts(when).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}（北京时间）`;
}

function describe(entry) {
  const data = JSON.parse(entry.entry_json);
  const d = data.decision || {};
  const rows = [["决定类型", KINDS[data.kind] || data.kind], ["记录时间", beijing(data.occurred_at)]];
  if (d.decision_id) rows.push(["决定编号", d.decision_id]);
  if (d.tier) rows.push(["处理种类", TIERS[d.tier] || d.tier]);
  if (d.receipt) rows.push(["机构", d.receipt.institution_name], ["备案编号", d.receipt.filing_code],
    ["有效期至", d.receipt.valid_until]);
  if (d.reason) rows.push(["原因", REASONS[d.reason] || d.reason]);
  if (d.decision_ref) rows.push(["决定文号", d.decision_ref]);
  if (d.effective_on) rows.push(["生效日期", d.effective_on]);
  if (d.total) rows.push(["涉及证书", `${d.total} 本`]);
  if (d.grade) rows.push(["年度", d.year], ["等级", GRADES[d.grade] || d.grade]);
  if (d.previous_grade) rows.push(["修订前等级", GRADES[d.previous_grade] || d.previous_grade]);
  if (d.basis) rows.push(["依据", d.basis], ["摘要", d.summary], ["决定日期", d.decided_on]);
  if (d.reversed_on) rows.push(["撤销日期", d.reversed_on]);
  return pairs(rows);
}

async function showEntries(target, subject, kinds, emptyText) {
  show(target, el("p", {}, "查询中…"));
  try {
    const answer = await api(`/v1/log/entries?subject=${encodeURIComponent(subject)}`);
    let entries = answer.entries || [];
    if (kinds) entries = entries.filter((e) => kinds.includes(e.kind));
    if (!entries.length) { show(target, el("p", {}, emptyText)); return; }
    const items = entries.map((entry) => el("li", {}, describe(entry), el("p", {}, "核验中…")));
    show(target, el("ul", { class: "entries" }, items));
    for (let i = 0; i < entries.length; i++) {
      try {
        items[i].lastChild.replaceWith(await checkEntry(entries[i]));
      } catch (error) {
        items[i].lastChild.replaceWith(el("p", { class: "error" }, explain(error)));
      }
    }
  } catch (error) {
    fail(target, error);
  }
}

// --- sections ---------------------------------------------------------------------------------
async function onVerify(event) {
  event.preventDefault();
  const form = event.target;
  const target = document.getElementById("verify-result");
  if (!required(form, ["certificate_number", "holder_name"])) {
    show(target, el("p", { class: "error", role: "alert" }, "请填写证书编号和持证人姓名。"));
    return;
  }
  const number = form.elements.certificate_number.value.trim().toUpperCase();
  show(target, el("p", {}, "查询中…"));
  try {
    // POST: the holder's name stays out of the URL (history, proxy logs).
    const answer = await api(`/v1/certificates/${encodeURIComponent(number)}:verify`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ holder_name: form.elements.holder_name.value.trim() }),
    });
    const [text, kind] = RESULTS[answer.result] || ["未知结果", "missing"];
    const nodes = [el("p", { class: `status ${kind}` }, `核验结果：${text}`)];
    if (answer.result !== "VERIFICATION_RESULT_NOT_FOUND") {
      nodes.push(pairs([
        ["证书编号", answer.certificate_number], ["持证人", answer.holder_name_masked],
        ["身份证号", answer.holder_id_number_masked],
        ["职业（工种）", `${answer.occupation_name || ""}（${answer.occupation_code || ""}）`],
        ["等级", LEVELS[answer.skill_level] || answer.skill_level], ["发证日期", answer.issued_on],
        ["评价机构", answer.issuer_name], ["作废原因", REASONS[answer.reason]],
        ["作废日期", answer.effective_on]]));
    }
    show(target, ...nodes);
    if (answer.operation_id && has("transparency")) {
      const log = el("div", { class: "log-entries" });
      target.append(el("h3", {}, "公开决定日志"), log);
      await showEntries(log, `certificate-operation:${answer.operation_id}`, null,
        "该决定尚未记入公开日志，请稍后再查。");
    }
  } catch (error) {
    fail(target, error);
  }
}

async function loadAreas() {
  try {
    const answer = await api("/v1/areas?page.page_size=100");
    const select = document.getElementById("register-district");
    for (const area of answer.areas || []) {
      select.append(el("option", { value: area.district_code }, area.name || area.district_code));
    }
  } catch (error) {
    // The search works without the list: the select keeps "全部".
  }
}

async function onRegister(event) {
  event.preventDefault();
  const form = event.target;
  const target = document.getElementById("register-result");
  const query = new URLSearchParams();
  for (const name of ["name", "district_code", "occupation_code"]) {
    const value = form.elements[name].value.trim();
    if (value) query.set(name, value);
  }
  query.set("page.page_size", "50");
  show(target, el("p", {}, "查询中…"));
  try {
    const answer = await api(`/v1/register?${query}`);
    const entries = answer.entries || [];
    if (!entries.length) { show(target, el("p", {}, "没有符合条件的备案机构。")); return; }
    const items = entries.map((entry) => {
      const receipt = entry.receipt || {};
      const scope = (receipt.scope || []).map((s) => `${s.occupation_name || ""}（${s.occupation_code}）`);
      const item = el("li", {}, el("strong", {}, receipt.institution_name || ""), pairs([
        ["备案编号", receipt.filing_code], ["状态", INSTITUTION_STATUS[entry.status] || entry.status],
        ["统一社会信用代码", entry.institution_id], ["备案日期", receipt.filed_on],
        ["有效期至", receipt.valid_until], ["评价职业", scope.join("、")]]));
      if (has("transparency") && entry.institution_id) {
        const log = el("div", { class: "log-entries" });
        const button = el("button", { type: "button", class: "link" }, "查看公开决定日志记录");
        button.addEventListener("click", () => showEntries(log, `institution:${entry.institution_id}`,
          null, "公开日志中尚无该机构的记录。"));
        item.append(button, log);
      }
      return item;
    });
    show(target, el("p", {}, `共 ${entries.length} 家${answer.page && answer.page.next_page_token ? "（仅显示前 50 家）" : ""}：`),
      el("ul", { class: "entries" }, items));
  } catch (error) {
    fail(target, error);
  }
}

function onSubject(event) {
  event.preventDefault();
  const form = event.target;
  const target = document.getElementById(form.dataset.result);
  if (!required(form, ["institution_id"])) {
    show(target, el("p", { class: "error", role: "alert" }, "请填写统一社会信用代码。"));
    return;
  }
  const input = form.elements.institution_id;
  const id = input.value.trim().toUpperCase();
  if (!usccValid(id)) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
    show(target, el("p", { class: "error", role: "alert" },
      "请输入正确的统一社会信用代码：18 位数字或大写字母，末位为校验码。"));
    return;
  }
  showEntries(target, `institution:${id}`, form.dataset.kinds.split(","), "暂无公开记录。");
}

async function loadHead() {
  const target = document.getElementById("log-head");
  try {
    const answer = await api("/v1/log/head");
    logKey = answer.public_key_pem || null;
    const head = answer.head || {};
    const when = head.timestamp_ms ? beijing(Number(head.timestamp_ms)) : "";
    show(target, pairs([["已记录决定", `${Number(head.tree_size || 0)} 条`], ["树头签名时间", when],
      ["树根 SHA-256", hex(b64(head.root_hash))], ["日志标识", hex(b64(head.log_id)).slice(0, 16)]]));
  } catch (error) {
    fail(target, error);
  }
}

function start() {
  for (const node of document.querySelectorAll("[data-service]")) {
    node.hidden = !has(node.dataset.service);
  }
  document.getElementById("verify-form").addEventListener("submit", onVerify);
  document.getElementById("register-form").addEventListener("submit", onRegister);
  for (const form of document.querySelectorAll(".subject-form")) {
    form.addEventListener("submit", onSubject);
  }
  if (has("filing")) loadAreas();
  if (has("transparency")) loadHead();
}

start();

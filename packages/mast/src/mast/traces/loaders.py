"""Loaders from the raw formats of the MAS in MAST-Data (DESIGN.md §1.4) and from standard span exports.

Every loader returns ``list[Trace]``. Gold answers / human notes are *never* put into ``Trace.task``,
``turns`` or ``raw`` (AG2 ``other_data``, HyperAgent ``note``, Magentic ``expected_answer.txt``); they
are dropped at load time (DESIGN.md §6.4), except reference labels which go to ``Trace.labels`` (never
rendered into a prompt).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .sanitize import strip_leak_fields
from .schema import Trace, Turn

FORMATS: dict[str, Callable[..., list[Trace]]] = {}


def _register(name):
    def deco(fn):
        FORMATS[name] = fn
        return fn

    return deco


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _as_list(obj) -> list:
    return obj if isinstance(obj, list) else [obj]


def _lines(x) -> str:
    return "\n".join(map(str, x)) if isinstance(x, list) else str(x if x is not None else "")


# ---------------------------------------------------------------- MAD (HF mcemri/MAST-Data)
@_register("mad")
def load_mad(path) -> list[Trace]:
    """``MAD_full_dataset.json``: [{mas_name, llm_name, benchmark_name, trace_id, trace:{key,index,trajectory},
    mast_annotation:{"1.1":0|1,...}}]."""
    out = []
    for i, r in enumerate(_as_list(_read_json(path))):
        if "trace" not in r:
            raise ValueError(f"{path}: MAD record {i} has no 'trace' field (keys: {sorted(r)})")
        tr = r["trace"]
        raw = tr.get("trajectory", "") if isinstance(tr, dict) else str(tr)
        ann = r.get("mast_annotation")
        out.append(
            Trace(
                trace_id=str(r.get("trace_id", i)),
                mas_name=r.get("mas_name", ""),
                llm_name=r.get("llm_name", ""),
                benchmark=r.get("benchmark_name", ""),
                raw=raw,
                labels={k: int(v) for k, v in ann.items()} if isinstance(ann, dict) else None,
                metadata={"key": tr.get("key"), "index": tr.get("index")} if isinstance(tr, dict) else {},
                source_format="mad",
            )
        )
    return out


# Rounds whose codes are the published 14-mode MAST (all other rounds used drafts with 17-18 modes whose
# codes mean something else: round 1's "2.2" is Step Repetition, v3's 2.2 is Fail to Ask for Clarification).
MAST14_ROUNDS = frozenset({"generlazability", "generalizability", "generalisability", "generalization"})
_HUMAN_CODE = re.compile(r"^\s*(?:FM[-_ ]?)?(?P<code>\d\.\d{1,2})\b[\s.:\-]*(?P<name>[^\n]*)", re.IGNORECASE)


def _round_mode_to_v3(code: str, name: str, mast14: bool) -> tuple[str | None, str]:
    """Map one entry of a round's own code table to a v3 ID: (v3 id or None, how it was mapped).

    The *name* decides (codes are round-specific). Only the 14-mode rounds may fall back to the code when
    the name is not a known v3/prompt name; a draft-round mode whose name is unknown stays unmapped."""
    from ..taxonomy import MAST_V3, resolve

    mid = None
    if name:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mid = resolve(name, "auto")
        except (KeyError, ValueError):
            mid = None
    if mid is not None and mid in MAST_V3.ids:
        if mast14 and mid != code:
            return code, f"code (name {name!r} means v3 {mid})"
        return mid, "name"
    if mast14 and code in MAST_V3.ids:
        return code, "code"
    return None, "unmapped"


@_register("mad_human")
def load_mad_human(path) -> list[Trace]:
    """``MAD_human_labelled_dataset.json``: per-annotator labels go to ``metadata['human']`` keyed by the
    failure-mode text, and each round's *own* code table to ``metadata['round_codes']`` (code -> name).

    ``labels`` (majority of the annotators, on v3 IDs) is built from each round's own table: a mode is
    mapped to v3 by its *name* ("2.2 Step Repetition" in round 1 is v3 1.3, not v3 2.2); only the
    14-mode Generalizability round may use the code itself. Draft-round modes without a v3 counterpart
    are listed in ``metadata['unmapped']`` and never become a v3 label. When two round modes map to the
    same v3 ID the label is their OR (and ``metadata['merged']`` says so)."""
    out = []
    for i, r in enumerate(_as_list(_read_json(path))):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: human-labelled record {i} is a {type(r).__name__}, not an object")
        rnd = str(r.get("round", ""))
        mast14 = rnd.strip().lower() in MAST14_ROUNDS
        human: dict[str, dict[str, bool]] = {}
        round_codes: dict[str, str] = {}
        labels: dict[str, int] = {}
        how: dict[str, str] = {}
        unmapped: list[str] = []
        merged: list[str] = []
        for a in r.get("annotations", []):
            fm = str(a.get("failure mode", "")).strip()
            votes = {k: bool(v) for k, v in a.items() if k.startswith("annotator")}
            human[fm] = votes
            m = _HUMAN_CODE.match(fm)
            if not m:
                unmapped.append(fm.split("\n", 1)[0][:80])
                continue
            code, name = m.group("code"), m.group("name").strip()
            round_codes[code] = name
            mid, why = _round_mode_to_v3(code, name, mast14)
            if mid is None:
                unmapped.append(f"{code} {name}".strip())
                continue
            if not votes:
                continue
            v = int(sum(votes.values()) * 2 > len(votes))
            if mid in labels:
                merged.append(mid)
                v = max(v, labels[mid])
            labels[mid] = v
            how[mid] = f"{rnd} {code} -> {mid} by {why}"
        out.append(
            Trace(
                trace_id=str(r.get("trace_id", i)),
                mas_name=r.get("mas_name", ""),
                benchmark=r.get("benchmark_name", ""),
                raw=_lines(r.get("trace", "")),
                labels=labels or None,
                metadata={
                    "round": r.get("round"),
                    "human": human,
                    "round_codes": round_codes,
                    "mapping": how,
                    "unmapped": unmapped,
                    "merged": sorted(set(merged)),
                },
                source_format="mad_human",
            )
        )
    return out


# ---------------------------------------------------------------- AG2 / HyperAgent (same JSON envelope)
def _ag2_record(r: dict, fmt: str) -> Trace:
    if "trajectory" not in r:
        raise ValueError(f"{fmt} record has no 'trajectory' (keys: {sorted(r)})")
    clean, removed = strip_leak_fields(r)
    turns, raw = [], ""
    traj = clean["trajectory"]
    if isinstance(traj, list):
        for m in traj:
            if isinstance(m, dict):
                # AG2 swaps roles vs speakers (assistant turns carry role "user", name "assistant"):
                # the *name* is the speaker.
                turns.append(
                    Turn(
                        speaker=str(m.get("name") or m.get("role") or ""),
                        content=_lines(m.get("content")),
                        role=str(m.get("role", "")),
                    )
                )
            else:
                raw += str(m) + "\n"
    else:
        raw = str(traj)
    if fmt == "hyperagent" and raw and not turns:
        turns, raw = _parse_hyperagent(raw), ""
    return Trace(
        trace_id=str(clean.get("instance_id", "")) or "unknown",
        mas_name="AG2" if fmt == "ag2" else "HyperAgent",
        task=_lines(clean.get("problem_statement", "")),
        turns=turns,
        raw=raw.strip(),
        metadata={"removed_fields": removed},
        source_format=fmt,
    )


@_register("ag2")
def load_ag2(path) -> list[Trace]:
    """AG2/MathChat ``*_human.json``: {instance_id, problem_statement, other_data, trajectory, note?};
    ``other_data`` (gold answer, ``correct``) and ``note`` are dropped."""
    return [_ag2_record(r, "ag2") for r in _as_list(_read_json(path))]


_HYPER_RE = re.compile(
    r"^HyperAgent_\S+ - (?:INFO|DEBUG|WARNING) - (?P<who>[^:]+?)(?:'s Response)?: (?P<msg>.*)$"
)


def _parse_hyperagent(text: str) -> list[Turn]:
    turns: list[Turn] = []
    for line in text.split("\n"):
        m = _HYPER_RE.match(line)
        if m:
            turns.append(Turn(m.group("who").strip(), m.group("msg")))
        elif turns:
            turns[-1].content += "\n" + line
        elif line.strip():
            turns.append(Turn("log", line))
    return turns


@_register("hyperagent")
def load_hyperagent(path) -> list[Trace]:
    """HyperAgent JSON (AG2-like envelope, ``note`` = human annotation, stripped) with log-line trajectory."""
    return [_ag2_record(r, "hyperagent") for r in _as_list(_read_json(path))]


# ---------------------------------------------------------------- ChatDev
_CHATDEV_RE = re.compile(r"^\[(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?P<lvl>[A-Z]+)\] (?P<rest>.*)$")
_CHATDEV_SPEAKER = re.compile(r"^(?P<who>[A-Za-z][\w .\-]{0,60}?): (?P<msg>.*)$")


# ChatDev's bookkeeping blocks: token/cost accounting after every LLM call and software statistics after
# every phase. They are not agent behaviour (and would dominate a long log), so they are dropped;
# their totals go to metadata["usage"].
_CHATDEV_USAGE_BLOCK = re.compile(
    r"^\*\*\[(?:OpenAI_Usage_Info (?:Receive|Send)|Software Info|Post Info)\]\*\*", re.IGNORECASE
)
_CHATDEV_NUM = re.compile(
    r"(prompt_tokens|completion_tokens|total_tokens|num_tokens|cost)\s*[:=]\s*\$?([\d.]+)"
)
_CHATDEV_TASK = re.compile(r"^\*\*task_prompt\*\*:\s*(?P<task>.+)$", re.MULTILINE)


@_register("chatdev")
def load_chatdev(path) -> list[Trace]:
    """A ChatDev ``.log`` (``[YYYY-DD-MM HH:MM:SS INFO] Speaker: ...``). Dropped: ``System`` turns, HTTP
    request lines, the flask probe, and the ``**[OpenAI_Usage_Info ...]**`` / ``**[Software Info]**`` /
    ``**[Post Info]**`` token/cost blocks (their totals are kept in ``metadata['usage']``). The task is
    read from the ``**task_prompt**`` line of the preprocessing block."""
    path = Path(path)
    turns: list[Turn] = []
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        m = _CHATDEV_RE.match(line)
        if m:
            rest = m.group("rest")
            if rest.startswith("HTTP Request:") or "did not start for online log" in rest:
                turns.append(Turn("__noise__", ""))
                continue
            if _CHATDEV_USAGE_BLOCK.match(rest):
                turns.append(Turn("__usage__", rest))
                continue
            s = _CHATDEV_SPEAKER.match(rest)
            who, msg = (s.group("who"), s.group("msg")) if s else ("log", rest)
            turns.append(Turn(who.strip(), msg, timestamp=m.group("ts")))
        elif turns:
            turns[-1].content += "\n" + line
    usage = {"blocks": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    for t in turns:
        if t.speaker == "__usage__" and "OpenAI_Usage_Info Receive" in t.content:
            vals = dict(_CHATDEV_NUM.findall(t.content))
            usage["prompt_tokens"] += int(float(vals.get("prompt_tokens", 0)))
            usage["completion_tokens"] += int(float(vals.get("completion_tokens", 0)))
            usage["cost_usd"] += float(vals.get("cost", 0.0))
        usage["blocks"] += t.speaker == "__usage__"
    usage["cost_usd"] = round(usage["cost_usd"], 6)
    task_m = next((_CHATDEV_TASK.search(t.content) for t in turns if _CHATDEV_TASK.search(t.content)), None)
    turns = [t for t in turns if t.speaker not in ("__noise__", "__usage__", "System")]
    for t in turns:
        t.content = t.content.strip()
    return [
        Trace(
            trace_id=path.parent.name + "/" + path.stem,
            mas_name="ChatDev",
            task=task_m.group("task").strip() if task_m else "",
            turns=turns,
            metadata={"usage": usage},
            source_format="chatdev",
        )
    ]


# ---------------------------------------------------------------- MetaGPT / OpenManus (loguru lines)
_LOGURU_RE = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*\|\s*(?P<lvl>[A-Z]+)\s*\|\s*"
    r"(?P<src>[\w.]+(?::[\w<>]+:\d+)?)\s+-\s+(?P<msg>.*)$"
)
_AGENT_PREFIX = re.compile(r"^(?P<who>[\w .]+?(?:\([\w ]+\))?)(?:'s [\w ]+)?: (?P<msg>.*)$")


# Token/cost accounting lines (MetaGPT's cost manager, OpenManus's token counter): dropped, like ChatDev's.
_LOGURU_USAGE = re.compile(
    r"^(?:Total running cost: \$|Token usage: Input=|Cumulative (?:input|completion) tokens|"
    r"prompt_tokens: \d+, completion_tokens: \d+)",
    re.IGNORECASE,
)
# Framework bookkeeping events (OpenManus step counter and tool-dispatch notices, MetaGPT's "to do"
# notices): kept in the text, but marked role="event" so the repetition detectors skip them -- every
# normal run repeats them once per step.
_LOGURU_EVENT = re.compile(
    r"^(?:Executing step \d+/\d+|\w[\w ]* selected \d+ tools to use|Tools being prepared:|"
    r"Activating tool:|Token limit|.*: to do \w+\(\w+\)\s*$)",
)


def _parse_loguru(text: str) -> tuple[list[Turn], int]:
    """Turns of a loguru log and the number of token/cost lines dropped."""
    turns: list[Turn] = []
    dropped = 0
    for line in text.split("\n"):
        m = _LOGURU_RE.match(line)
        if m:
            msg = re.sub(r"^[^\w(]+\s*", "", m.group("msg"))  # drop emoji bullets (OpenManus)
            if _LOGURU_USAGE.match(msg):
                dropped += 1
                turns.append(Turn("__usage__", ""))
                continue
            event = bool(_LOGURU_EVENT.match(msg))
            a = (
                None
                if msg.startswith(("Tools being prepared:", "Activating tool:"))
                else _AGENT_PREFIX.match(msg)
            )
            who, body = (a.group("who"), a.group("msg")) if a else (m.group("src").split(":")[0], msg)
            turns.append(Turn(who.strip(), body, role="event" if event else "", timestamp=m.group("ts")))
        elif turns:
            turns[-1].content += "\n" + line
        elif line.strip():
            turns.append(Turn("log", line))
    turns = [t for t in turns if t.speaker != "__usage__"]
    for t in turns:
        t.content = t.content.strip("\n")
    return turns, dropped


@_register("metagpt")
def load_metagpt(path) -> list[Trace]:
    """MetaGPT JSON {run_id, prompt, content, timestamp, cost, log_file}; ``content`` is loguru lines."""
    out = []
    for i, r in enumerate(_as_list(_read_json(path))):
        if "content" not in r:
            raise ValueError(f"{path}: MetaGPT record {i} has no 'content' (keys: {sorted(r)})")
        out.append(
            Trace(
                trace_id=str(r.get("run_id", i)),
                mas_name="MetaGPT",
                task=str(r.get("prompt", "")),
                turns=(parsed := _parse_loguru(str(r["content"])))[0],
                metadata={"cost": r.get("cost"), "usage_lines_dropped": parsed[1]},
                source_format="metagpt",
            )
        )
    return out


@_register("openmanus")
def load_openmanus(path) -> list[Trace]:
    """An OpenManus ``.log`` (loguru lines, ``Manus's thoughts: ...``, tool calls)."""
    path = Path(path)
    turns, dropped = _parse_loguru(path.read_text(encoding="utf-8", errors="replace"))
    return [
        Trace(
            trace_id=path.stem,
            mas_name="OpenManus",
            turns=turns,
            metadata={"usage_lines_dropped": dropped},
            source_format="openmanus",
        )
    ]


# ---------------------------------------------------------------- AppWorld / Magentic-One
@_register("appworld")
def load_appworld(path) -> list[Trace]:
    """AppWorld ``full_logs/<task_id>.txt``: kept as raw text (credentials are redacted at sanitize time)."""
    path = Path(path)
    return [
        Trace(
            trace_id=path.stem,
            mas_name="AppWorld",
            benchmark="Test-C",
            raw=path.read_text(encoding="utf-8", errors="replace"),
            source_format="appworld",
        )
    ]


_M1_START = "SCENARIO.PY STARTING !#!#"
# AgentChat Console headers: "---------- WebSurfer ----------" and, in later autogen versions,
# "---------- TextMessage (MagenticOneOrchestrator) ----------"
_M1_HEADER = re.compile(
    r"^-{4,} (?:(?P<kind>\w+Message|\w+Event) \((?P<src>[^)]*)\)|(?P<who>[^-].*?)) -{4,}\s*$"
)
# the original autogen-magentic-one console: a rule of dashes, then "[2024-10-15T13:35:51.1], WebSurfer:"
_M1_OLD_HEADER = re.compile(r"^\[(?P<ts>\d{4}-\d\d-\d\dT[\d:.]+)\], (?P<who>[^:\n]+):\s*(?P<msg>.*)$")
_M1_RULE = re.compile(r"^-{20,}\s*$")
_M1_FOOTER = re.compile(
    r"^(?:SCENARIO\.PY (?:COMPLETE|RUNTIME:|EXITED WITH CODE)|RUN\.SH (?:COMPLETE|STARTING))[^\n]*$"
)


def _parse_magentic(text: str) -> tuple[list[Turn], dict]:
    """Turns of a Magentic-One console log; everything before ``SCENARIO.PY STARTING`` (docker/pip
    preamble) and the agbench footer lines are left out."""
    lines = text.replace("\r\n", "\n").split("\n")
    start = next((i + 1 for i, x in enumerate(lines) if _M1_START in x), 0)
    info = {"preamble_lines": start, "footer_lines": 0}
    turns: list[Turn] = []
    pending_rule = False
    for line in lines[start:]:
        if _M1_FOOTER.match(line.strip()):
            info["footer_lines"] += 1
            continue
        h = _M1_HEADER.match(line.strip())
        if h:
            who = h.group("src") if h.group("kind") else h.group("who")
            turns.append(Turn(who.strip(), "", role=h.group("kind") or ""))
            pending_rule = False
            continue
        if _M1_RULE.match(line):
            pending_rule = True
            continue
        o = _M1_OLD_HEADER.match(line) if pending_rule else None
        pending_rule = False
        if o:
            who = o.group("who").strip()
            role = "thought" if who.endswith("(thought)") else ""
            turns.append(Turn(who.removesuffix("(thought)").strip(), o.group("msg"), role, o.group("ts")))
        elif turns:
            turns[-1].content += "\n" + line
        elif line.strip():
            info["preamble_lines"] += 1  # text before the first header (no start marker in this log)
    for t in turns:
        t.content = t.content.strip("\n")
    return turns, info


@_register("magentic")
def load_magentic(path) -> list[Trace]:
    """A Magentic-One task folder (``prompt.txt``, ``console_log.txt``). ``expected_answer.txt`` is never read.

    The console log is split into turns at the AgentChat headers (``---------- WebSurfer ----------``,
    ``---------- TextMessage (MagenticOneOrchestrator) ----------``) or the older autogen-magentic-one
    ``[timestamp], source:`` headers. The docker/pip preamble before ``SCENARIO.PY STARTING !#!#`` and the
    agbench footer are dropped (counts in metadata). A log with no header at all is kept as raw text."""
    path = Path(path)
    logs = sorted(path.rglob("console_log.txt"))
    if not logs:
        raise ValueError(f"{path}: no console_log.txt below this folder (not a Magentic-One run)")
    out = []
    for log in logs:
        run = log.parent
        prompt = run / "prompt.txt"
        tid = str(run.relative_to(path)) if run != path else path.name
        text = log.read_text(encoding="utf-8", errors="replace")
        turns, info = _parse_magentic(text)
        raw = ""
        if not turns:  # no recognisable header: keep the text after the start marker
            raw = text.split(_M1_START, 1)[1] if _M1_START in text else text
        out.append(
            Trace(
                trace_id=tid,
                mas_name="Magentic-One",
                benchmark="GAIA",
                task=prompt.read_text(errors="replace").strip() if prompt.exists() else "",
                turns=turns,
                raw=raw,
                source_format="magentic",
                metadata={"skipped_files": [p.name for p in run.glob("expected_answer*")]} | info,
            )
        )
    return out


# ---------------------------------------------------------------- plain messages JSONL
@_register("messages")
def load_messages_jsonl(path) -> list[Trace]:
    """JSONL: each line is ``{trace_id, messages:[{role, content, name?}], ...}`` or one message with a
    ``trace_id`` field (grouped in order). OpenAI-style content parts are joined."""
    groups: dict[str, Trace] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e})") from e
        if "messages" in r:
            tid = str(r.get("trace_id", n))
            meta = {
                k: v
                for k, v in r.items()
                if k not in ("messages", "trace_id", "task", "mas_name", "llm_name", "benchmark")
            }
            meta, removed = strip_leak_fields(meta)
            groups[tid] = Trace(
                trace_id=tid,
                mas_name=r.get("mas_name", ""),
                llm_name=r.get("llm_name", ""),
                benchmark=r.get("benchmark", ""),
                task=r.get("task", ""),
                turns=[_msg_turn(m) for m in r["messages"]],
                metadata=meta,
                source_format="messages",
            )
        elif "role" in r or "content" in r:
            tid = str(r.get("trace_id", "default"))
            groups.setdefault(tid, Trace(trace_id=tid, source_format="messages")).turns.append(_msg_turn(r))
        else:
            raise ValueError(f"{path}:{n}: expected 'messages' or a message with 'role'/'content'")
    return list(groups.values())


def _content_text(c) -> str:
    if isinstance(c, list):
        return "\n".join(
            p.get("text") or p.get("content") or "" if isinstance(p, dict) else str(p) for p in c
        )
    return "" if c is None else str(c)


def _msg_turn(m: dict) -> Turn:
    text = _content_text(m.get("content"))
    for tc in m.get("tool_calls") or []:
        f = tc.get("function", {})
        text += f"\n<tool_call {f.get('name', '')}> {f.get('arguments', '')}"
    return Turn(speaker=str(m.get("name") or m.get("role") or ""), content=text, role=str(m.get("role", "")))


# ---------------------------------------------------------------- OpenTelemetry GenAI / OpenInference spans
def _attr_value(v):
    if not isinstance(v, dict):
        return v
    for k in ("stringValue", "intValue", "doubleValue", "boolValue"):
        if k in v:
            return v[k]
    if "arrayValue" in v:
        return [_attr_value(x) for x in v["arrayValue"].get("values", [])]
    return v


def _iter_spans(obj) -> list[dict]:
    """Flatten OTLP-JSON ({resourceSpans:[{scopeSpans:[{spans}]}]}) or a plain list of spans."""
    if isinstance(obj, dict) and "resourceSpans" in obj:
        spans = [
            s for rs in obj["resourceSpans"] for ss in rs.get("scopeSpans", []) for s in ss.get("spans", [])
        ]
    elif isinstance(obj, dict) and "spans" in obj:
        spans = obj["spans"]
    else:
        spans = _as_list(obj)
    out = []
    for s in spans:
        attrs = s.get("attributes", {})
        if isinstance(attrs, list):
            attrs = {a["key"]: _attr_value(a.get("value")) for a in attrs}
        out.append(s | {"attributes": attrs})
    return out


def _read_spans(path) -> list[dict]:
    p = Path(path)
    txt = p.read_text(encoding="utf-8")
    try:
        return _iter_spans(json.loads(txt))
    except json.JSONDecodeError:  # JSONL of spans / OTLP batches
        return [s for line in txt.splitlines() if line.strip() for s in _iter_spans(json.loads(line))]


def _start(s) -> int:
    return int(s.get("startTimeUnixNano") or s.get("start_time") or 0)


def _messages_text(v) -> str:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            return v
    parts = []
    for m in _as_list(v):
        if isinstance(m, dict):
            if "parts" in m:
                parts += [str(p.get("content", p.get("text", ""))) for p in m["parts"] if isinstance(p, dict)]
            else:
                parts.append(_content_text(m.get("content")))
        else:
            parts.append(str(m))
    return "\n".join(p for p in parts if p)


@_register("otel")
def load_otel_genai(path) -> list[Trace]:
    """OTLP-JSON export with OpenTelemetry GenAI attributes: one Trace per traceId, turns ordered by start
    time, speaker = ``gen_ai.agent.name``, content = output messages (else tool result / input messages)."""
    by_trace: dict[str, list[dict]] = {}
    for s in _read_spans(path):
        by_trace.setdefault(str(s.get("traceId") or s.get("trace_id") or "trace"), []).append(s)
    out = []
    for tid, spans in by_trace.items():
        turns = []
        for s in sorted(spans, key=_start):
            a = s["attributes"]
            op = a.get("gen_ai.operation.name", "")
            who = a.get("gen_ai.agent.name") or a.get("gen_ai.tool.name") or s.get("name", "")
            if op == "execute_tool":
                txt = str(a.get("gen_ai.tool.call.result", a.get("gen_ai.tool.call.arguments", "")))
                if txt:
                    turns.append(Turn(f"tool:{a.get('gen_ai.tool.name', who)}", txt, role="tool"))
                continue
            txt = _messages_text(a.get("gen_ai.output.messages", ""))
            if txt:
                turns.append(Turn(str(who), txt, role=op))
        out.append(
            Trace(
                trace_id=tid,
                turns=turns,
                source_format="otel",
                llm_name=next(
                    (
                        s["attributes"].get("gen_ai.request.model")
                        for s in spans
                        if s["attributes"].get("gen_ai.request.model")
                    ),
                    "",
                ),
            )
        )
    return out


@_register("openinference")
def load_openinference(path) -> list[Trace]:
    """OpenInference spans (``openinference.span.kind``): speaker = nearest AGENT ancestor's name; content =
    ``llm.output_messages.N.message.content`` or ``output.value``."""
    by_trace: dict[str, list[dict]] = {}
    for s in _read_spans(path):
        tid = str(s.get("traceId") or s.get("context", {}).get("trace_id") or "trace")
        by_trace.setdefault(tid, []).append(s)
    out = []
    for tid, spans in by_trace.items():
        by_id = {str(s.get("spanId") or s.get("context", {}).get("span_id")): s for s in spans}

        def agent_of(s, by_id=by_id):
            seen = 0
            while s is not None and seen < 100:
                if s["attributes"].get("openinference.span.kind") == "AGENT":
                    return s["attributes"].get("agent.name") or s.get("name", "agent")
                s = by_id.get(str(s.get("parentSpanId") or s.get("parent_id")))
                seen += 1
            return ""

        turns = []
        for s in sorted(spans, key=_start):
            a = s["attributes"]
            kind = a.get("openinference.span.kind", "")
            if kind not in ("LLM", "TOOL"):
                continue
            outs = sorted(k for k in a if re.match(r"llm\.output_messages\.\d+\.message\.content$", k))
            txt = "\n".join(str(a[k]) for k in outs) or str(a.get("output.value", ""))
            if txt:
                who = agent_of(s) or s.get("name", "")
                if kind == "TOOL":
                    who = f"tool:{a.get('tool.name', s.get('name', ''))}"
                turns.append(Turn(str(who), txt, role=kind.lower()))
        out.append(Trace(trace_id=tid, turns=turns, source_format="openinference"))
    return out


# ---------------------------------------------------------------- canonical JSONL + auto-detection
@_register("jsonl")
def load_trace_jsonl(path) -> list[Trace]:
    """This package's own normalised format: one ``Trace.to_dict()`` per line."""
    return [Trace.from_dict(json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]


def save_traces(traces: list[Trace], path) -> Path:
    """Write the canonical JSONL atomically (temp file + rename)."""
    from paperworks_shared.files import atomic_write_text

    path = Path(path)
    atomic_write_text(path, "".join(t.to_json() + "\n" for t in traces))
    return path


def detect_format(path) -> str:
    """Guess the format from the folder/extension and the first record's keys."""
    p = Path(path)
    if p.is_dir():
        if any(p.rglob("console_log.txt")):
            return "magentic"
        raise ValueError(f"{p}: a folder, but no console_log.txt (only Magentic-One folders are recognised)")
    head = p.read_text(encoding="utf-8", errors="replace")[:20000]
    if p.suffix == ".log":
        return "chatdev" if _CHATDEV_RE.match(head.lstrip().split("\n", 1)[0]) else "openmanus"
    if p.suffix == ".txt":
        return "appworld"
    if p.suffix == ".jsonl":
        first = json.loads(head.split("\n", 1)[0])
        if "resourceSpans" in first or "spans" in first:
            return "openinference" if "openinference" in head else "otel"
        return "jsonl" if "source_format" in first and "turns" in first else "messages"
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: cannot detect the format (not JSON: {e}); pass format=...") from e
    if isinstance(obj, dict) and ("resourceSpans" in obj or "spans" in obj):
        return "openinference" if "openinference.span.kind" in json.dumps(obj)[:200000] else "otel"
    r = _as_list(obj)[0] if _as_list(obj) else {}
    if not isinstance(r, dict):
        raise ValueError(f"{p}: cannot detect the format of a JSON {type(r).__name__}")
    if "mast_annotation" in r or ("trace" in r and isinstance(r["trace"], dict)):
        return "mad"
    if "annotations" in r and "trace" in r:
        return "mad_human"
    if "trajectory" in r and "instance_id" in r:
        traj = r["trajectory"]
        return "hyperagent" if "HyperAgent" in json.dumps(traj)[:5000] else "ag2"
    if "content" in r and ("run_id" in r or "log_file" in r):
        return "metagpt"
    if "attributes" in r:
        return "openinference" if "openinference.span.kind" in json.dumps(obj)[:200000] else "otel"
    raise ValueError(
        f"{p}: unrecognised JSON record keys {sorted(r)[:12]}; pass format= one of {sorted(FORMATS)}"
    )


def load_traces(path, format: str = "auto") -> list[Trace]:
    """Load traces from `path` in `format` (see ``FORMATS``) or auto-detect it."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such trace file or folder: {p}")
    fmt = detect_format(p) if format == "auto" else format
    if fmt not in FORMATS:
        raise ValueError(f"unknown trace format {fmt!r}; known: {sorted(FORMATS)}")
    return FORMATS[fmt](p)

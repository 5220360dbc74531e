"""Loaders and detectors on full-length logs in each framework's own format (tens of KB, with the
preambles, bookkeeping and noise real runs have), generated here from the frameworks' documented log
formats: Magentic-One (agbench console_log.txt: docker/pip preamble, SCENARIO.PY markers, AgentChat
Console headers), ChatDev (``[date INFO] Speaker: ...`` with OpenAI usage / software-info blocks),
MetaGPT and OpenManus (loguru lines with cost / token counters and per-step notices), HyperAgent log
lines, AG2 message lists.

Each normal run must load with all its turns and none of its noise, and the deterministic detectors must
stay quiet on it (FM-1.3 / FM-2.1 on normal behaviour were the bug); the same run with an injected
loop / reset must still be flagged, so the detectors are not simply switched off."""

import json
import random

import pytest

from mast.detectors import conversation_reset, missing_termination, step_repetition
from mast.traces import load_traces

WORDS = (
    "search page result table column value year population report source wiki article museum author "
    "record number file spreadsheet row cell chart paper journal volume issue figure estimate total"
).split()


def _sentence(rng, n=14):
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _para(rng, k=3):
    return " ".join(_sentence(rng, rng.randint(8, 18)) for _ in range(k))


# ---------------------------------------------------------------- Magentic-One
def _pip_preamble(rng, n=160):
    pk = ["numpy", "pandas", "requests", "openpyxl", "pdfminer.six", "playwright", "markitdown", "tiktoken"]
    lines = ["RUN.SH STARTING !#!#", "#1 [internal] load build definition from Dockerfile"]
    lines += [f"Step {i}/12 : RUN pip install --no-cache-dir -r requirements.txt" for i in range(1, 5)]
    lines += [" ---> Running in 3f2a9c1b7d4e", " ---> 9b1e0c3a2f11"]
    for i in range(n):
        p = rng.choice(pk)
        v = f"{rng.randint(0, 3)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
        lines.append(
            rng.choice(
                [
                    f"Requirement already satisfied: {p} in /usr/local/lib/python3.11/site-packages ({v})",
                    f"Collecting {p}=={v} (from -r requirements.txt (line {i % 9 + 1}))",
                    f"  Downloading {p}-{v}-py3-none-any.whl (1{i % 9}1 kB)",
                    f"Using cached {p}-{v}-py3-none-any.whl",
                ]
            )
        )
    lines.append("Installing collected packages: " + ", ".join(pk))
    lines.append("Successfully installed " + " ".join(f"{p}-1.{i}.0" for i, p in enumerate(pk)))
    return lines


def magentic_log(rng, task, *, header="plain", loop=False, reset=False, rounds=14):
    """(console_log text, list of (speaker, content) turns that must come out)."""
    agents = ["WebSurfer", "FileSurfer", "Coder", "ComputerTerminal"]
    turns = [("user", task)]
    team = "\n".join(f"{a}: A helpful assistant with access to tools." for a in agents)
    plan = (
        f"We are working to address the following user request:\n\n{task}\n\n\n"
        f"To answer this request we have assembled the following team:\n\n{team}\n\n\n"
        "Here is an initial fact sheet to consider:\n\n1. GIVEN OR VERIFIED FACTS\n- "
        + _sentence(rng)
        + "\n\n2. FACTS TO LOOK UP\n- "
        + _sentence(rng)
        + "\n\n3. FACTS TO DERIVE\n- "
        + _sentence(rng)
        + "\n\n4. EDUCATED GUESSES\n- "
        + _sentence(rng)
        + "\n\n\nHere is the plan to follow as best as possible:\n\n- "
        + "\n- ".join(_sentence(rng) for _ in range(4))
    )
    turns.append(("MagenticOneOrchestrator", plan))
    for r in range(rounds):
        who = agents[r % len(agents)] if r % 5 != 4 else "WebSurfer"
        turns.append(("MagenticOneOrchestrator", f"Please {_sentence(rng, 10).lower()}"))
        if who == "WebSurfer":
            body = (
                f"I typed '{_sentence(rng, 4)[:-1]}' into the browser search bar.\n\n"
                f"The web browser is open to the page [{_sentence(rng, 3)[:-1]} - Search]"
                f"(https://www.bing.com/search?q={rng.randint(1000, 9999)}).\n"
                f"The viewport shows {rng.randint(10, 100)}% of the webpage, and is positioned at the top of the "
                f"page\nThe following text is visible in the viewport:\n\n{_para(rng, 6)}"
            )
        elif who == "Coder":
            col = rng.choice(WORDS)
            body = f"```python\nimport pandas as pd\ndf = pd.read_excel('{col}.xlsx')\nprint(df['{rng.choice(WORDS)}'].sum())\n```"
        elif who == "ComputerTerminal":
            body = f"The script ran, then exited with Unix exit code: 0\nIts output was:\n{_para(rng, 2)}"
        else:
            body = (
                f"Address: file:///workspace/data_{r}.xlsx\nViewport position: Showing page 1 of 1.\n"
                + _para(rng, 4)
            )
        turns.append((who, body))
        if r == 7:  # a normal replan after a stall: the orchestrator restates the request inside a new plan
            turns.append(
                ("MagenticOneOrchestrator", plan.replace("initial fact sheet", "updated fact sheet"))
            )
    if loop:  # the same WebSurfer answer over and over
        body = turns[-1][1] if turns[-1][0] == "WebSurfer" else "I clicked 'Next page'. " + _para(rng, 2)
        for _ in range(4):
            turns += [("MagenticOneOrchestrator", "Please scroll down."), ("WebSurfer", body)]
    if reset:  # the orchestrator starts over with the bare user request
        turns.append(("MagenticOneOrchestrator", task))
    answer = rng.choice(WORDS)
    turns.append(("MagenticOneOrchestrator", f"FINAL ANSWER: {answer}"))

    def head(who):
        if header == "typed":
            kind = "TextMessage" if who != "WebSurfer" else "MultiModalMessage"
            return f"---------- {kind} ({who}) ----------"
        return f"---------- {who} ----------"

    out = _pip_preamble(rng) + ["SCENARIO.PY STARTING !#!#"]
    for who, body in turns:
        out += [head(who), body]
    out += [f"FINAL ANSWER: {answer}", "SCENARIO.PY COMPLETE !#!#", "SCENARIO.PY RUNTIME: 412 !#!#"]
    out += ["RUN.SH COMPLETE !#!#"]
    return "\n".join(out) + "\n", turns


def _magentic_dir(tmp_path, rng, **kw):
    task = "How many studio albums were published by Mercedes Sosa between 2000 and 2009 (included)?"
    run = tmp_path / "gaia_validation_level_1__MagenticOne" / "8e867cd7-cff9-4e6c-867a-ff5ddc2550be" / "0"
    run.mkdir(parents=True)
    text, turns = magentic_log(rng, task, **kw)
    (run / "console_log.txt").write_text(text)
    (run / "prompt.txt").write_text(task + "\n")
    (run / "expected_answer.txt").write_text("3")
    return tmp_path, text, turns, task


@pytest.mark.parametrize("header", ["plain", "typed"])
def test_magentic_full_log_loads_turns_without_preamble(tmp_path, header):
    root, text, want, task = _magentic_dir(tmp_path, random.Random(1), header=header)
    assert len(text) > 20_000
    [t] = load_traces(root)
    assert [(x.speaker, x.content) for x in t.turns] == [(w, c.strip("\n")) for w, c in want[:-1]] + [
        (want[-1][0], want[-1][1] + "\nFINAL ANSWER: " + want[-1][1].split(": ")[1])
    ]
    assert t.task == task and t.raw == ""
    body = t.text()
    for noise in (
        "Requirement already satisfied",
        "Collecting ",
        "Step 1/12",
        "SCENARIO.PY",
        "RUN.SH",
        "---> ",
    ):
        assert noise not in body
    assert t.metadata["preamble_lines"] > 160 and t.metadata["footer_lines"] == 3
    assert "expected_answer.txt" in t.metadata["skipped_files"]
    # normal orchestrator behaviour (plans, replans that quote the request, many delegations): no flags
    assert not step_repetition(t).present
    assert not conversation_reset(t).present
    assert not missing_termination(t).present


def test_magentic_detectors_still_flag_real_loops_and_resets(tmp_path):
    root, _, _, _ = _magentic_dir(tmp_path / "a", random.Random(2), loop=True)
    [t] = load_traces(root)
    assert step_repetition(t).present and "WebSurfer" in step_repetition(t).evidence
    root, _, _, _ = _magentic_dir(tmp_path / "b", random.Random(3), reset=True)
    [t] = load_traces(root)
    assert conversation_reset(t).present


def test_magentic_old_console_format(tmp_path):
    """The original autogen-magentic-one console: a rule, then ``[timestamp], source:``."""
    rng = random.Random(4)
    rule = "-" * 75
    parts = _pip_preamble(rng, 40) + ["SCENARIO.PY STARTING !#!#"]
    want = []
    for i in range(20):
        who = ["orchestrator (thought)", "orchestrator (-> WebSurfer)", "WebSurfer"][i % 3]
        body = _para(rng, 3)
        parts += [rule, f"[2024-10-15T13:{i:02d}:51.1234], {who}:", "", body]
        want.append((who.removesuffix("(thought)").strip(), body))
    parts += ["SCENARIO.PY COMPLETE !#!#"]
    run = tmp_path / "task" / "0"
    run.mkdir(parents=True)
    (run / "console_log.txt").write_text("\n".join(parts))
    [t] = load_traces(tmp_path)
    assert [(x.speaker, x.content) for x in t.turns] == want
    assert t.turns[0].role == "thought" and "Requirement" not in t.text()


# ---------------------------------------------------------------- ChatDev
def chatdev_log(rng, loop=False):
    ts = "2023-25-08 07:{:02d}:{:02d}"
    n = [0]

    def line(rest):
        n[0] += 1
        return f"[{ts.format(n[0] // 60 % 60, n[0] % 60)} INFO] {rest}"

    task = "Develop a basic Gomoku game."
    out = [
        line("**[Preprocessing]**"),
        "",
        "**ChatDev Starts** (20230825072339)",
        "",
        "**Timestamp**: 20230825072339",
        "",
        "**config_path**: /ChatDev/CompanyConfig/Default/ChatChainConfig.json",
        "",
        f"**task_prompt**: {task}",
        "",
        "**project_name**: Gomoku",
        "",
        "**Log File**: /ChatDev/WareHouse/Gomoku_DefaultOrganization_20230825072339.log",
        "",
        "**ChatDevConfig**:",
        "ChatEnvConfig.clear_structure: True",
        "ChatEnvConfig.git_management: False",
        "",
        "**ChatGPTConfig**:",
        "ChatGPTConfig(temperature=0.2, top_p=1.0, n=1, stream=False, stop=None, max_tokens=None)",
        "",
    ]
    turns, usage = [], {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "blocks": 0}
    pairs = [
        ("Chief Product Officer", "Chief Executive Officer", "DemandAnalysis"),
        ("Chief Technology Officer", "Chief Executive Officer", "LanguageChoose"),
        ("Programmer", "Chief Technology Officer", "Coding"),
        ("Code Reviewer", "Programmer", "CodeReviewComment"),
        ("Programmer", "Code Reviewer", "CodeReviewModification"),
        ("Software Test Engineer", "Programmer", "TestErrorSummary"),
    ]
    for a, b, phase in pairs * 2:
        out += [line("System: **[chatting]**"), "", "| Parameter | Value |", "| --- | --- |"]
        out += [
            f"| **task_prompt** | {task} |",
            f"| **assistant_role_name** | {a} |",
            f"| **phase_name** | {phase} |",
            "",
        ]
        for turn in range(2):
            for who, other in ((a, b), (b, a)):
                out.append(
                    line('HTTP Request: POST https://api.openai.com/v1/chat/completions "HTTP/1.1 200 OK"')
                )
                p_t, c_t = rng.randint(400, 4000), rng.randint(20, 900)
                cost = p_t * 1.5e-6 + c_t * 2e-6
                usage["prompt_tokens"] += p_t
                usage["completion_tokens"] += c_t
                usage["cost"] += cost
                usage["blocks"] += 1
                out += [
                    line("**[OpenAI_Usage_Info Receive]**"),
                    f"prompt_tokens: {p_t}",
                    f"completion_tokens: {c_t}",
                    f"total_tokens: {p_t + c_t}",
                    f"cost: ${cost:.6f}",
                    "",
                ]
                if phase == "Coding" or phase.startswith("CodeReviewMod"):
                    msg = f"main.py\n```python\n# {_sentence(rng, 6)}\nclass {rng.choice(WORDS).title()}Board:\n    size = 15\n```"
                else:
                    msg = _para(rng, 4)
                content = f"**{who}<->{other} on : {phase}, turn {turn}**\n\n{msg}"
                out += [line(f"{who}: {content}"), ""]
                turns.append((who, content))
                out.append(line("flask app.py did not start for online log"))
        out += [line("**[Seminar Conclusion]**:"), "", _sentence(rng), ""]
        turns.append(("log", "**[Seminar Conclusion]**:\n\n" + out[-2]))
        usage["blocks"] += 1
        out += [
            line("**[Software Info]**:"),
            "",
            f"💰**cost**=${usage['cost']:.6f}",
            "",
            "🔨**version_updates**=-1",
            "",
            f"❓**num_prompt_tokens**={usage['prompt_tokens']}",
            "",
            f"❗**num_completion_tokens**={usage['completion_tokens']}",
            "",
        ]
    if loop:
        for _ in range(4):
            content = "**Programmer<->Code Reviewer on : CodeReviewModification, turn 9**\n\nI will fix the board size."
            out += [line(f"Programmer: {content}"), ""]
            turns.append(("Programmer", content))
    usage["blocks"] += 1
    out += [
        line("**[Post Info]**"),
        "",
        "Software Info: ",
        "",
        f"💰**cost**=${usage['cost']:.6f}",
        "",
        f"🌟**num_total_tokens**={usage['prompt_tokens'] + usage['completion_tokens']}",
        "",
        "🕑**duration**=292.00s",
        "",
        "ChatDev Starts (20230825072339)",
        "",
        "ChatDev Ends (20230825072831)",
        "",
    ]
    return "\n".join(out), turns, usage, task


def test_chatdev_full_log_drops_token_and_cost_blocks(tmp_path):
    text, want, usage, task = chatdev_log(random.Random(5))
    assert len(text) > 20_000
    p = tmp_path / "Gomoku_DefaultOrganization_20230825072339" / "Gomoku.log"
    p.parent.mkdir()
    p.write_text(text)
    [t] = load_traces(p)
    got = [(x.speaker, x.content) for x in t.turns if not x.content.startswith("**[Preprocessing]**")]
    assert got == want
    body = t.text()
    for noise in (
        "OpenAI_Usage_Info",
        "prompt_tokens",
        "total_tokens",
        "cost",
        "💰",
        "Software Info",
        "HTTP Request",
    ):
        assert noise not in body, noise
    assert "did not start" not in body and "| **phase_name** |" not in body
    assert t.task == task
    u = t.metadata["usage"]
    assert u["blocks"] == usage["blocks"] and u["prompt_tokens"] == usage["prompt_tokens"]
    assert u["completion_tokens"] == usage["completion_tokens"]
    assert u["cost_usd"] == pytest.approx(usage["cost"], abs=1e-5)
    assert not step_repetition(t).present and not conversation_reset(t).present
    text, _, _, _ = chatdev_log(random.Random(6), loop=True)
    p.write_text(text)
    [t] = load_traces(p)
    assert step_repetition(t).present


# ---------------------------------------------------------------- MetaGPT / OpenManus (loguru)
def _loguru(ts_i, src, msg, level="INFO"):
    return (
        f"2024-06-11 17:{ts_i // 60 % 60:02d}:{ts_i % 60:02d}.{ts_i % 1000:03d} | {level:<8} | {src} - {msg}"
    )


def metagpt_record(rng):
    lines, turns, n_cost = [], [], 0
    roles = [
        ("Alice", "Product Manager", "WritePRD"),
        ("Bob", "Architect", "WriteDesign"),
        ("Eve", "Project Manager", "WriteTasks"),
        ("Alex", "Engineer", "WriteCode"),
    ]
    i = 0
    for rnd in range(3):
        for name, role, action in roles:
            i += 1
            lines.append(
                _loguru(i, "metagpt.roles.role:_act:391", f"{name}({role}): to do {action}({action})")
            )
            body = f'```json\n{{"Original Requirements": "{_sentence(rng)}", "round": {rnd}}}\n```\n{_para(rng, 5)}'
            lines.append(body)
            turns.append((f"{name}({role})", f"to do {action}({action})\n{body}"))
            for _ in range(2):
                i += 1
                n_cost += 1
                lines.append(
                    _loguru(
                        i,
                        "metagpt.utils.cost_manager:update_cost:57",
                        f"Total running cost: ${i * 0.003:.3f} | Max budget: $3.000 | Current cost: "
                        f"${0.003:.3f}, prompt_tokens: {rng.randint(500, 3000)}, completion_tokens: {rng.randint(50, 900)}",
                    )
                )
    return (
        {
            "run_id": "metagpt_gomoku_1",
            "prompt": "Write a Gomoku game",
            "timestamp": "2024-06-11",
            "cost": 0.41,
            "log_file": "logs/gomoku.txt",
            "content": "\n".join(lines),
        },
        turns,
        n_cost,
    )


def test_metagpt_full_log(tmp_path):
    rec, want, n_cost = metagpt_record(random.Random(7))
    assert len(rec["content"]) > 8_000
    p = tmp_path / "metagpt.json"
    p.write_text(json.dumps([rec]))
    [t] = load_traces(p)
    assert [(x.speaker, x.content) for x in t.turns] == want
    assert "Total running cost" not in t.text() and t.metadata["usage_lines_dropped"] == n_cost
    assert not step_repetition(t).present and not conversation_reset(t).present


def openmanus_log(rng, steps=18):
    lines, contentful, i = [], [], 0
    task = "Create a snake game in Python and save it to snake.py"
    lines.append(_loguru(0, "__main__:main:15", "Enter your prompt: " + task, "WARNING"))
    lines.append(_loguru(1, "__main__:main:21", "Processing your request...", "WARNING"))
    for s in range(1, steps + 1):
        i += 10
        lines.append(_loguru(i, "app.agent.base:run:140", f"Executing step {s}/20"))
        thought = _para(rng, 2)
        lines.append(
            _loguru(
                i + 1,
                "app.llm:update_token_count:250",
                f"Token usage: Input={rng.randint(2000, 9000)}, Completion={rng.randint(10, 300)}, "
                f"Cumulative Input={s * 5000}, Cumulative Completion={s * 100}, Total=5100, "
                f"Cumulative Total={s * 5100}",
            )
        )
        lines.append(_loguru(i + 2, "app.agent.toolcall:think:81", f"✨ Manus's thoughts: {thought}"))
        lines.append(_loguru(i + 3, "app.agent.toolcall:think:82", "🛠️ Manus selected 1 tools to use"))
        tool = ["python_execute", "str_replace_editor", "browser_use"][s % 3]
        lines.append(_loguru(i + 4, "app.agent.toolcall:think:86", f"🧰 Tools being prepared: ['{tool}']"))
        lines.append(
            _loguru(
                i + 5,
                "app.agent.toolcall:think:89",
                f'🔧 Tool arguments: {{"code": "print({_sentence(rng, 5)!r})"}}',
            )
        )
        lines.append(
            _loguru(i + 6, "app.agent.toolcall:execute_tool:180", f"🔧 Activating tool: '{tool}'...")
        )
        res = f"🎯 Tool '{tool}' completed its mission! Result: Observed output of cmd `{tool}` executed:\n{_sentence(rng)}"
        lines.append(_loguru(i + 7, "app.agent.toolcall:act:150", res))
        contentful.append(thought)
    lines.append(
        _loguru(
            i + 20,
            "app.agent.toolcall:_handle_special_tool:205",
            "🏁 Special tool 'terminate' has completed the task!",
        )
    )
    return "\n".join(lines), contentful, steps


def test_openmanus_full_log(tmp_path):
    text, thoughts, steps = openmanus_log(random.Random(8))
    assert len(text) > 8_000
    p = tmp_path / "openmanus_snake.log"
    p.write_text(text)
    [t] = load_traces(p)
    assert [x.content for x in t.turns if x.speaker == "Manus"] == thoughts
    assert "Token usage" not in t.text() and t.metadata["usage_lines_dropped"] == steps
    events = [x for x in t.turns if x.role == "event"]
    assert len(events) == 4 * steps  # step counter, "selected 1 tools", "being prepared", "activating"
    assert "Manus selected 1 tools to use" in t.text()  # kept for the judge
    assert not step_repetition(t).present and not conversation_reset(t).present


# ---------------------------------------------------------------- HyperAgent / AG2
def test_hyperagent_full_log(tmp_path):
    rng = random.Random(9)
    iid = "astropy__astropy-12907"
    lines, want = [f"HyperAgent_{iid} - INFO - Initialized HyperAgent instance {iid}"], []
    for k in range(24):
        who = ["Planner", "Inner-Navigator-Assistant", "Navigator->Planner", "Inner-Editor-Assistant"][k % 4]
        first = f"Thought: {_sentence(rng)}"
        rest = [
            "Action:",
            "```python",
            f"result = code_search._run(names=['separability_matrix_{k}'])",
            "print(result)",
            "```",
        ]
        suffix = "'s Response" if "->" not in who else ""
        lines.append(f"HyperAgent_{iid} - INFO - {who}{suffix}: {first}")
        lines += rest
        want.append((who, "\n".join([first] + rest)))
    rec = {
        "instance_id": iid,
        "problem_statement": ["Modeling's separability_matrix does not compute correctly"],
        "other_data": {"resolved": False},
        "trajectory": "\n".join(lines),
        "note": "annotator note",
    }
    p = tmp_path / "hyper.json"
    p.write_text(json.dumps([rec]))
    [t] = load_traces(p)
    assert len("\n".join(lines)) > 5_000
    assert [(x.speaker, x.content) for x in t.turns[1:]] == want
    assert "annotator note" not in t.text() and "resolved" not in t.text()
    assert not step_repetition(t).present and not conversation_reset(t).present


def test_ag2_full_log(tmp_path):
    rng = random.Random(10)
    problem = "Janet's ducks lay 16 eggs per day. She eats three for breakfast. How much does she make?"
    traj = [
        {
            "content": f"Let's use Python to solve a math problem.\n\nProblem: {problem}",
            "role": "assistant",
            "name": "mathproxyagent",
        }
    ]
    for k in range(16):
        if k % 2 == 0:
            traj.append(
                {
                    "content": f"Key idea: {_sentence(rng)}\n```python\nx = 16 - 3 - {k}\nprint(x)\n```",
                    "role": "user",
                    "name": "assistant",
                }
            )
        else:
            traj.append(
                {
                    "content": f"{rng.randint(1, 99)}\n{_sentence(rng)}",
                    "role": "assistant",
                    "name": "mathproxyagent",
                }
            )
    traj.append({"content": "The answer is \\boxed{18}.", "role": "user", "name": "assistant"})
    rec = {
        "instance_id": 7,
        "problem_statement": [problem],
        "other_data": {"given": "18", "correct": True},
        "trajectory": traj,
    }
    p = tmp_path / "ag2_human.json"
    p.write_text(json.dumps([rec]))
    [t] = load_traces(p)
    assert len(t.turns) == len(traj) and t.turns[1].speaker == "assistant"
    assert '"given"' not in t.text() and "correct" not in json.dumps([x.content for x in t.turns])
    assert not step_repetition(t).present and not conversation_reset(t).present
    assert not missing_termination(t).present


def test_otel_genai_export_many_spans(tmp_path):
    """An OTLP-JSON export as a collector writes it: several resources and scopes, spans out of time
    order, nested invoke_agent / chat / execute_tool spans, two traces interleaved."""
    rng = random.Random(11)

    def attr(k, v):
        return {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}

    want: dict[str, list] = {"a" * 32: [], "b" * 32: []}
    spans = []
    for tid in want:
        t0 = 1_700_000_000_000_000_000
        for k in range(30):
            start = t0 + k * 1_000_000_000
            agent = ["planner", "coder", "reviewer"][k % 3]
            if k % 4 == 3:
                res = f"exit code 0\n{_sentence(rng)}"
                a = [
                    attr("gen_ai.operation.name", "execute_tool"),
                    attr("gen_ai.tool.name", "python"),
                    attr("gen_ai.tool.call.arguments", '{"code": "print(1)"}'),
                    attr("gen_ai.tool.call.result", res),
                ]
                want[tid].append(("tool:python", res))
            else:
                text = _para(rng, 3)
                msgs = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": text}]}])
                a = [
                    attr("gen_ai.operation.name", "chat"),
                    attr("gen_ai.agent.name", agent),
                    attr("gen_ai.request.model", "gpt-4o-2024-08-06"),
                    attr("gen_ai.usage.input_tokens", 1200 + k),
                    attr("gen_ai.output.messages", msgs),
                ]
                want[tid].append((agent, text))
            spans.append(
                {
                    "traceId": tid,
                    "spanId": f"{k:016x}",
                    "name": f"span {k}",
                    "startTimeUnixNano": str(start),
                    "endTimeUnixNano": str(start + 500),
                    "attributes": a,
                }
            )
    rng.shuffle(spans)
    export = {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", f"svc{i}")]},
                "scopeSpans": [
                    {"scope": {"name": "opentelemetry.instrumentation.openai"}, "spans": spans[i::3]}
                ],
            }
            for i in range(3)
        ]
    }
    p = tmp_path / "export.json"
    p.write_text(json.dumps(export))
    assert p.stat().st_size > 20_000
    traces = {t.trace_id: t for t in load_traces(p)}
    assert set(traces) == set(want)
    for tid, t in traces.items():
        assert [(x.speaker, x.content) for x in t.turns] == want[tid]
        assert t.llm_name == "gpt-4o-2024-08-06"
        assert not step_repetition(t).present and not conversation_reset(t).present

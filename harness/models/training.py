"""Small models trained to emit tool calls, one per dialect, so tool calling can be checked offline.

The random-weight model of ``builtin.py`` produces noise: fine for latency, useless for checking
whether a server returns the right tool call. The models built here are small too (a 4-layer,
128-wide qwen2, about 5 MB in float32) but trained on generated coding-agent conversations, so that
their GREEDY answer is:

- a tool call when the user asks to read a file, run a command or search, with the arguments
  copied from the request (``Read {"file_path": "src/app.py"}``, ``Bash {"command": "pytest -q"}``);
- several calls when asked for several things ("Read src/a.py and src/b.py" -> two Read calls; in
  Harmony, where ``<|call|>`` ends the answer, one call per turn, in order);
- a short plain answer otherwise: after tool results, and for plain questions.

Everything is generated from a seed (paths, commands, phrasings), the loss is masked to the
assistant's answers, and training uses torch on the CPU (measured several times faster than MLX on
these 2-core machines), single-threaded because the thread count changes the order of float sums
and so the weights; they are then written as an mlx-lm loadable folder (config.json, float32
model.safetensors, tokenizer with the dialect's chat template). Two things make a model copy the
request's names rather than guess familiar ones: 40% of names are made-up words, and each step adds
a batch of short single requests (one request, one call) to the batch of whole conversations. Each
batch shares one system prompt and tool list, computed once per batch: that keeps a step near one
second here, about 35 minutes a model. Retrain one model with::

    python -m harness.models.training --dialect hermes
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.models.builtin import TINY_QWEN2_CONFIG, TOOL_MODEL_NAMES, corpus_texts, tool_model_path, train_tokenizer
from harness.models.dialects import DIALECTS, Dialect, parse_output

# --- The tools and prompts the models are trained on ------------------------------------------
# ``scenarios/tools/coding-tools-small.json`` holds the same list (a unit of the scenarios).


def _tool(name: str, description: str, params: list[str], required: list[str]) -> dict[str, Any]:
    properties = {key: {"type": "string"} for key in params}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


# Short schemas keep every conversation under ~500 tokens.
TOOLS: list[dict[str, Any]] = [
    _tool("Read", "Read a file.", ["file_path"], ["file_path"]),
    _tool("Bash", "Run a shell command.", ["command"], ["command"]),
    _tool("Grep", "Search files for a pattern.", ["pattern", "path"], ["pattern"]),
]

SYSTEM_PROMPT = (
    "You are a coding assistant working in a software repository. "
    "Use the tools to read files and run commands. Keep answers short."
)
OTHER_SYSTEM_PROMPTS = [
    "You are a helpful coding assistant. Answer briefly.",
    "You help developers with their code. Use tools when you need to look at files or run commands.",
    "You are an expert software engineer. Be concise.",
]

# --- Building blocks of the generated conversations --------------------------------------------

DIRS = [
    "src",
    "lib",
    "app",
    "tests",
    "scripts",
    "docs",
    "pkg",
    "core",
    "api",
    "cmd",
    "internal",
    "web",
    "server",
    "tools",
    "config",
    "examples",
    "bin",
    "services",
]
NAMES = [
    "app",
    "main",
    "utils",
    "models",
    "views",
    "config",
    "db",
    "auth",
    "cli",
    "parser",
    "server",
    "client",
    "handlers",
    "routes",
    "schema",
    "cache",
    "settings",
    "helpers",
    "api",
    "core",
    "index",
    "logger",
    "worker",
    "tasks",
    "types",
    "errors",
    "storage",
    "session",
    "users",
    "orders",
    "payment",
    "queue",
    "render",
    "search",
    "loader",
    "engine",
    "build",
    "deploy",
    "metrics",
    "report",
    "user_service",
    "data_loader",
    "http_client",
    "backup",
    "cron",
    "mailer",
    "invoice",
    "events",
    "stats",
    "widget",
]
EXTS = [".py"] * 6 + [
    ".js",
    ".ts",
    ".go",
    ".rs",
    ".md",
    ".json",
    ".yaml",
    ".toml",
    ".txt",
    ".sh",
    ".c",
    ".java",
    ".rb",
    ".cfg",
    ".tsx",
    ".h",
]
ROOT_FILES = [
    "README.md",
    "setup.py",
    "Makefile",
    "pyproject.toml",
    "package.json",
    "Cargo.toml",
    "go.mod",
    "requirements.txt",
    "Dockerfile",
    ".gitignore",
    "setup.cfg",
    "tox.ini",
    "CHANGELOG.md",
    "main.py",
]
# Syllables of made-up file and folder names.
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "ru",
    "ta",
    "zo",
    "pi",
    "qu",
    "ex",
    "bar",
    "foo",
    "baz",
    "vel",
    "dor",
    "gin",
    "sol",
    "tin",
    "wex",
    "yum",
    "ark",
    "fin",
    "gor",
    "hal",
    "jet",
    "kip",
    "mox",
    "nub",
    "ops",
    "ply",
]
FUNC_NAMES = [
    "main",
    "load_config",
    "parse_args",
    "create_app",
    "run",
    "handle_request",
    "connect",
    "save",
    "render_page",
    "get_user",
    "send_email",
    "build_index",
    "compute_total",
    "validate",
    "start_server",
    "fetch_data",
    "close",
    "retry",
    "format_date",
    "init_db",
    "cleanup",
    "process_batch",
    "login",
    "export_csv",
    "read_file",
    "apply_patch",
    "schedule",
    "resize_image",
    "merge",
    "tokenize",
]
TEST_COMMANDS = [
    "pytest -q",
    "pytest",
    "pytest -x",
    "python -m pytest -q",
    "npm test",
    "make test",
    "cargo test",
    "go test ./...",
    "tox",
    "yarn test",
    "pytest -q {test}",
    "pytest {test}",
    "pytest -k {word}",
]
OTHER_COMMANDS = [
    "git status",
    "git diff",
    "git log --oneline -5",
    "ls -la",
    "ls {dir}",
    "python {py}",
    "make",
    "npm run build",
    "ruff check .",
    "mypy {dir}",
    "black --check .",
    "wc -l {path}",
    "git branch",
    "pip list",
    "du -sh {dir}",
    "node {js}",
    "./scripts/{name}.sh",
    "docker ps",
    "git show --stat",
    "npm install",
    "pip install -e .",
    "cargo build",
    "go build ./...",
    "git diff --stat",
    "pwd",
]
PATTERNS = [
    "TODO",
    "FIXME",
    "def main",
    "import os",
    "class User",
    "raise ValueError",
    "async def",
    "logger.info",
    "return None",
    "self.cache",
    "api_key",
    "deprecated",
    "timeout",
    "localhost",
    "password",
    "retry",
    "print",
    "assert",
    "HTTPError",
    "open",
]

READ_ASKS = [
    "Read {p}",
    "Read {p}.",
    "Please read {p}.",
    "Open {p}.",
    "Show me {p}.",
    "Can you read {p}?",
    "Read the file {p}.",
    "Let's start: read {p}.",
    "Check {p} for me.",
    "First, read {p}.",
    "Please open {p} and show me what is in it.",
    "Take a look at {p}.",
    "Read {p}, please.",
    "I need to see {p}. Read it.",
]
BASH_ASKS = [
    "Run {c}",
    "Run {c}.",
    "Please run {c}.",
    "Execute {c}.",
    "Can you run {c}?",
    "Run {c} and show me the output.",
    "Now run {c}.",
    "Run `{c}`.",
    "Try {c}.",
    "Please execute `{c}`.",
]
TEST_ASKS = [
    "Now run the tests with {c}.",
    "Run the tests with {c}.",
    "Run the test suite: {c}.",
    "Please run the tests using {c}.",
    "Let's run the tests: {c}.",
]
GREP_ASKS = [
    'Search for "{pat}" in {d}.',
    "Grep for {pat} in {d}.",
    'Find "{pat}" in {d}.',
    'Look for "{pat}" under {d}.',
]
GREP_ASKS_NO_PATH = ['Search the code for "{pat}".', "Grep for {pat}.", 'Find every "{pat}".']
MULTI_READ_ASKS = [
    "Read {a} and {b}.",
    "Please read {a} and {b}.",
    "Open {a} and {b}.",
    "Read {a}, {b} and {c}.",
    "Read both {a} and {b}.",
]
MIXED_ASKS = ["Read {p} and run {c}.", "Run {c} and read {p}.", "Run {c} and {c2}.", "Please run {c} and then {c2}."]

# Plain questions and the answers they get. The answers need not be clever: they must be plain text.
PLAIN = {
    "What does this project do?": [
        "It is a small web service with a command line interface.",
        "It is a library with a few helper modules and tests.",
    ],
    "What should I fix first?": [
        "Start with the failing test, then clean up the warnings.",
        "Fix the error handling in the main module first.",
    ],
    "Did the tests pass?": ["Yes, the tests passed.", "Some tests failed; see the output above."],
    "Did all the tests pass?": ["Yes, all the tests passed.", "No, some tests failed."],
    "Summarize what you found in one sentence.": ["The code is small and works, but it needs more tests."],
    "Is the code ready to merge?": ["Almost: the tests pass, but the docs need an update."],
    "Thanks! Anything else I should know?": ["No, that is all for now.", "Nothing else, the code looks fine."],
    "What is a pytest fixture?": ["A fixture is a function that prepares data or state for a test."],
    "Explain the difference between a list and a tuple.": ["A list can change after it is created; a tuple cannot."],
    "How do I undo the last git commit?": ["Run git reset --soft HEAD~1 to undo it and keep the changes."],
    "Which file should I change?": ["Change the main module; the rest can stay as it is."],
    "Why did it fail?": ["It failed because a value was missing from the configuration."],
    "Give me a short summary.": ["The project is in good shape; only small fixes are needed."],
    "What does the main function do?": ["It parses the arguments, loads the settings and starts the program."],
    "Hello!": ["Hello! How can I help you with your code?"],
    "Can you explain that again, briefly?": ["Sure: the code reads its settings, then runs the main loop."],
    "Is there a bug?": ["I do not see an obvious bug, but the error handling is thin."],
    "What language is this written in?": ["It is written mostly in Python."],
    "Thanks.": ["You are welcome."],
    "What do you think of the code?": ["It is readable, but some functions are too long."],
    "How can I make it faster?": ["Cache the results that are computed more than once."],
    "Should I add more tests?": ["Yes, add tests for the error cases."],
    "What is the next step?": ["Add a test for the new behaviour, then update the docs."],
    "Explain what a race condition is.": ["Two tasks use shared data at once and the result depends on timing."],
}
PLAIN_QUESTIONS = list(PLAIN)


@dataclass
class Example:
    """One generated conversation: messages (with every assistant answer), tools, and answer kinds."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    kinds: list[str]  # one per assistant message: call, multi, summary, plain


class ConversationGenerator:
    """Coding-agent conversations from a seed: requests for tools, their results, plain questions."""

    def __init__(self, dialect: str, seed: int):
        self.rng = random.Random(seed)
        # Harmony ends an answer at <|call|>: several calls are made one per turn.
        self.sequential_calls = dialect == "harmony"
        self._call_serial = 0

    # Random pieces ------------------------------------------------------------------------------
    # 40% of names are made-up words: the model cannot guess them and has to copy them.
    def word(self) -> str:
        r = self.rng
        if r.random() < 0.4:
            return "".join(r.choice(SYLLABLES) for _ in range(r.randint(2, 3)))
        return r.choice(NAMES)

    def directory(self) -> str:
        return self.rng.choice(DIRS)

    def path(self) -> str:
        r = self.rng
        x = r.random()
        if x < 0.2:
            return f"tests/test_{self.word()}.py"
        if x < 0.3:
            return r.choice(ROOT_FILES)
        return f"{self.directory()}/{self.word()}{r.choice(EXTS)}"

    def command(self, tests: bool) -> str:
        r = self.rng
        template = r.choice(TEST_COMMANDS if tests else OTHER_COMMANDS)
        return template.format(
            test=f"tests/test_{self.word()}.py",
            word=self.word(),
            dir=self.directory(),
            py=f"{self.word()}.py",
            path=self.path(),
            js=f"{self.word()}.js",
            name=self.word(),
        )

    # Tool results and the answers that follow them ----------------------------------------------
    def file_text(self, path: str) -> tuple[str, str]:
        r = self.rng
        names = r.sample(FUNC_NAMES, r.randint(1, 3))
        if path.endswith(".py"):
            lines = [f"import {r.choice(['os', 'sys', 'json', 're', 'time'])}", ""]
            for name in names:
                lines += [
                    f"def {name}({r.choice(['', 'path', 'data', 'x, y', 'config'])}):",
                    f"    return {r.choice(['None', 'True', '0', 'data', 'path'])}",
                ]
        elif path.endswith((".md", ".txt")):
            lines = [f"# {self.word().title()}", "", f"See {names[0]} for details."]
        elif path.endswith((".json", ".yaml", ".toml", ".cfg", ".ini")):
            lines = [f"name = {self.word()}", f"version = {r.randint(0, 3)}.{r.randint(0, 9)}", f"entry = {names[0]}"]
        else:
            lines = [f"function {name}() {{ return {r.randint(0, 99)}; }}" for name in names]
        return "\n".join(lines), names[0]

    def run_output(self, command: str, tests: bool) -> tuple[str, str]:
        r = self.rng
        if tests:
            passed, failed = r.randint(1, 40), (r.randint(1, 3) if r.random() < 0.3 else 0)
            seconds = f"{r.randint(0, 9)}.{r.randint(10, 99)}s"
            if failed:
                return (
                    f"FAILED tests/test_{self.word()}.py::test_{r.choice(FUNC_NAMES)}\n"
                    f"{failed} failed, {passed} passed in {seconds}",
                    f"{failed} of the tests failed.",
                )
            return f"{'.' * min(passed, 20)}\n{passed} passed in {seconds}", f"All {passed} tests passed."
        if command.startswith("git status"):
            return "On branch main\nnothing to commit, working tree clean", "The working tree is clean."
        if command.startswith("ls"):
            entries = [self.path().split("/")[-1] for _ in range(r.randint(2, 5))]
            return "\n".join(entries), f"The directory has {len(entries)} entries."
        if command.startswith("git log"):
            return "\n".join(
                f"{r.getrandbits(28):07x} {r.choice(['Fix', 'Add', 'Update'])} {self.word()}" for _ in range(3)
            ), "Those are the latest commits."
        if r.random() < 0.2:
            return f"error: {self.word()} not found\nexit code 1", "The command failed with exit code 1."
        return f"{self.word()} {r.randint(1, 99)}\ndone", "The command finished without errors."

    def grep_output(self, pattern: str, where: str | None) -> tuple[str, str]:
        r = self.rng
        file = f"{where or self.directory()}/{self.word()}.py"
        if r.random() < 0.2:
            return "No matches found.", f'There is no "{pattern}" there.'
        return f"{file}:{r.randint(1, 200)}: {pattern}", f'Found "{pattern}" in {file}.'

    # Requests -------------------------------------------------------------------------------------
    def request(self, kind: str) -> tuple[str, list[tuple[str, dict[str, str]]]]:
        """A user message and the calls it asks for."""
        r = self.rng
        if kind == "read":
            p = self.path()
            return r.choice(READ_ASKS).format(p=p), [("Read", {"file_path": p})]
        if kind == "test":
            c = self.command(tests=True)
            return r.choice(TEST_ASKS).format(c=c), [("Bash", {"command": c})]
        if kind == "bash":
            c = self.command(tests=r.random() < 0.4)
            return r.choice(BASH_ASKS).format(c=c), [("Bash", {"command": c})]
        if kind == "grep":
            pat = r.choice(PATTERNS)
            if r.random() < 0.3:
                return r.choice(GREP_ASKS_NO_PATH).format(pat=pat), [("Grep", {"pattern": pat})]
            d = self.directory()
            return r.choice(GREP_ASKS).format(pat=pat, d=d), [("Grep", {"pattern": pat, "path": d})]
        if kind == "multi":
            if r.random() < 0.6:
                paths: list[str] = []
                while len(paths) < 3:
                    p = self.path()
                    if p not in paths:
                        paths.append(p)
                ask = r.choice(MULTI_READ_ASKS)
                count = 3 if "{c}" in ask else 2
                return ask.format(a=paths[0], b=paths[1], c=paths[2]), [
                    ("Read", {"file_path": p}) for p in paths[:count]
                ]
            ask = r.choice(MIXED_ASKS)
            p, c, c2 = self.path(), self.command(r.random() < 0.5), self.command(False)
            while c2 == c:
                c2 = self.command(False)
            text = ask.format(p=p, c=c, c2=c2)
            if ask.startswith("Read"):
                return text, [("Read", {"file_path": p}), ("Bash", {"command": c})]
            if "{p}" in ask:
                return text, [("Bash", {"command": c}), ("Read", {"file_path": p})]
            return text, [("Bash", {"command": c}), ("Bash", {"command": c2})]
        raise ValueError(kind)

    def result(self, name: str, args: dict[str, str]) -> tuple[str, str]:
        """A tool's output and a one-line summary of it."""
        if name == "Read":
            text, first = self.file_text(args["file_path"])
            return text, f"{args['file_path']} defines {first}."
        if name == "Bash":
            command = args["command"]
            tests = any(word in command for word in ("test", "pytest", "tox"))
            return self.run_output(command, tests)
        return self.grep_output(args["pattern"], args.get("path"))

    def call_message(self, calls: list[tuple[str, dict[str, str]]]) -> dict[str, Any]:
        r = self.rng
        tool_calls = []
        for name, args in calls:
            self._call_serial += 1
            # Arguments as the API sends them (a JSON string) or already parsed (as MLX-Textgen passes them).
            arguments: Any = json.dumps(args) if r.random() < 0.7 else dict(args)
            tool_calls.append(
                {
                    "id": f"call_{self._call_serial}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
        return {"role": "assistant", "content": None, "tool_calls": tool_calls}

    def tool_messages(self, message: dict[str, Any], outputs: list[str], legacy: bool) -> list[dict[str, Any]]:
        out = []
        for call, output in zip(message["tool_calls"], outputs, strict=True):
            name = call["function"]["name"]
            if legacy:  # how the legacy server passes a tool result on: as a user message
                out.append({"role": "user", "content": f"Tool {name} returned:\n{output}"})
            else:
                out.append({"role": "tool", "tool_call_id": call["id"], "name": name, "content": output})
        return out

    # Whole conversations ------------------------------------------------------------------------
    def system_and_tools(self, with_tools: bool = True) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
        """A system message (or none) and the tool list (sometimes shuffled), from the seed."""
        r = self.rng
        tools = list(TOOLS) if with_tools else None
        if tools and r.random() < 0.15:
            r.shuffle(tools)
        x = r.random()
        system = SYSTEM_PROMPT if x < 0.75 else (r.choice(OTHER_SYSTEM_PROMPTS) if x < 0.92 else None)
        return ({"role": "system", "content": system} if system else None), tools

    def single(self) -> Example:
        """One request and the call it asks for (the first call, in Harmony): short, all about copying."""
        r = self.rng
        system, tools = self.system_and_tools()
        messages = [system] if system else []
        kind = r.choices(["read", "test", "bash", "grep", "multi"], [0.35, 0.15, 0.2, 0.1, 0.2])[0]
        text, calls = self.request(kind)
        messages.append({"role": "user", "content": text})
        messages.append(self.call_message(calls[:1] if self.sequential_calls else calls))
        return Example(messages=messages, tools=tools, kinds=["multi" if len(calls) > 1 else "call"])

    def plan(self) -> list[str]:
        r = self.rng
        if r.random() < 0.3:  # the shape of the built-in scenarios
            plan = ["read", "test", "plain"]
            if r.random() < 0.3:
                plan.insert(r.randint(0, 3), r.choice(["bash", "grep", "read", "multi", "plain"]))
            return plan
        kinds = ["read", "test", "bash", "grep", "multi", "plain"]
        weights = [0.22, 0.1, 0.14, 0.1, 0.18, 0.26]
        return r.choices(kinds, weights, k=r.choice([1, 1, 2, 2, 3, 4]))

    def conversation(self) -> Example:
        r = self.rng
        system, tools = self.system_and_tools(with_tools=r.random() > 0.05)
        messages: list[dict[str, Any]] = [system] if system else []
        kinds: list[str] = []
        legacy = r.random() < 0.25
        names = {tool["function"]["name"] for tool in tools or []}
        for step in self.plan() if tools else ["plain"] * r.randint(1, 3):
            if step == "plain":
                question = r.choice(PLAIN_QUESTIONS)
                messages.append({"role": "user", "content": question})
                messages.append({"role": "assistant", "content": r.choice(PLAIN[question])})
                kinds.append("plain")
                continue
            text, calls = self.request(step)
            if any(name not in names for name, _ in calls):
                continue
            messages.append({"role": "user", "content": text})
            results = [self.result(name, args) for name, args in calls]
            groups = [[c] for c in calls] if self.sequential_calls else [calls]
            done = 0
            for group in groups:
                message = self.call_message(group)
                messages.append(message)
                kinds.append("multi" if len(calls) > 1 else "call")
                outputs = [output for output, _ in results[done : done + len(group)]]
                messages.extend(self.tool_messages(message, outputs, legacy))
                done += len(group)
            summary = " ".join(line for _, line in results)
            messages.append({"role": "assistant", "content": summary})
            kinds.append("summary")
        if not kinds:  # every request needed a missing tool
            return self.conversation()
        return Example(messages=messages, tools=tools, kinds=kinds)


# --- Tokenizer, encoding and loss mask ---------------------------------------------------------


@dataclass
class Encoded:
    ids: list[int]
    labels: list[int]  # labels[t] is the target after ids[..t]; -100 where no loss is taken
    prefix: int = 0  # tokens before the first user turn (system prompt and tools), never in the loss


def build_tokenizer(dialect: Dialect, seed: int, vocab_size: int = 2048):
    """The BPE tokenizer of ``fixtures`` trained on the fixed corpus plus rendered conversations."""
    generator = ConversationGenerator(dialect.name, seed + 7919)
    texts = corpus_texts()
    tokenizer = train_tokenizer(texts, vocab_size=300)  # only to render the conversations below
    tokenizer.chat_template = dialect.chat_template
    if dialect.extra_special_tokens:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": list(dialect.extra_special_tokens)}, replace_additional_special_tokens=False
        )
    for _ in range(400):
        example = generator.conversation()
        text = tokenizer.apply_chat_template(example.messages, tools=example.tools, tokenize=False)
        for token in dialect.extra_special_tokens:  # added whole afterwards: keep them out of the merges
            text = text.replace(token, "\n")
        texts.append(text)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    if dialect.extra_special_tokens:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": list(dialect.extra_special_tokens)}, replace_additional_special_tokens=False
        )
    tokenizer.chat_template = dialect.chat_template
    tokenizer.eos_token = dialect.eos_token
    return tokenizer


def answer_spans(dialect: Dialect, text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_final) character spans of the assistant answers in a rendered conversation."""
    spans = []
    start = text.find(dialect.answer_start)
    while start >= 0:
        begin = start + len(dialect.answer_start)
        ends = [(text.find(tok, begin), tok) for tok in dialect.answer_ends]
        end, token = min((pos, tok) for pos, tok in ends if pos >= 0)
        spans.append((begin, end + len(token), "<|channel|>final" in text[begin:end]))
        start = text.find(dialect.answer_start, end)
    return spans


def encode(tokenizer, dialect: Dialect, example: Example) -> Encoded:
    text = tokenizer.apply_chat_template(example.messages, tools=example.tools, tokenize=False)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    spans = answer_spans(dialect, text)
    swap = {
        tokenizer.convert_tokens_to_ids(a): tokenizer.convert_tokens_to_ids(b)
        for a, b in dialect.final_label_swap.items()
    }
    cut = text.find(dialect.user_start)
    prefix = sum(1 for _, hi in offsets if hi <= cut) if cut >= 0 else 0
    labels = [-100] * len(ids)
    span_index = 0
    for t in range(1, len(ids)):
        lo, hi = offsets[t]
        while span_index < len(spans) and spans[span_index][1] <= lo:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] <= lo and hi <= spans[span_index][1]:
            target = ids[t]
            if spans[span_index][2] and target in swap:
                target = swap[target]
            labels[t - 1] = target
    return Encoded(ids=ids, labels=labels, prefix=prefix)


# --- The model and its training ----------------------------------------------------------------

TOOL_MODEL_CONFIG = dict(
    TINY_QWEN2_CONFIG,
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
)


@dataclass(frozen=True)
class ToolModelSpec:
    name: str
    dialect: str
    seed: int
    steps: int = 2000
    batch_size: int = 16  # whole conversations per step
    single_batch_size: int = 48  # plus this many single requests per step
    learning_rate: float = 3e-3
    max_tokens: int = 560  # conversations longer than this are not used


TOOL_MODELS: dict[str, ToolModelSpec] = {
    "tools-hermes": ToolModelSpec(name="tools-hermes", dialect="hermes", seed=11),
    "tools-qwen-xml": ToolModelSpec(name="tools-qwen-xml", dialect="qwen-xml", seed=12),
    "tools-harmony": ToolModelSpec(name="tools-harmony", dialect="harmony", seed=13),
}


assert tuple(TOOL_MODELS) == TOOL_MODEL_NAMES, "builtin.TOOL_MODEL_NAMES lists the models trained here"


def _batches(
    encoded: list[Encoded], batch_size: int, steps: int, rng: random.Random
) -> list[tuple[list[int], list[Encoded]]]:
    """(shared prefix, batch) pairs: each batch has one system prompt and tool list, similar lengths."""
    groups: dict[tuple[int, ...], list[Encoded]] = {}
    for item in encoded:
        groups.setdefault(tuple(item.ids[: item.prefix]), []).append(item)
    batches: list[tuple[list[int], list[Encoded]]] = []
    for prefix, items in groups.items():
        rng.shuffle(items)
        for i in range(0, len(items), batch_size * 8):
            chunk = sorted(items[i : i + batch_size * 8], key=lambda item: len(item.ids))
            for k in range(0, len(chunk) - batch_size + 1, batch_size):
                batches.append((list(prefix), chunk[k : k + batch_size]))
    rng.shuffle(batches)
    return batches[:steps]


def _loss(model, prefix: list[int], batch: list[Encoded], pad: int):
    """Mean loss over the answer tokens; the shared prefix runs once and its keys/values are reused."""
    import torch

    size, start = len(batch), len(prefix)
    width = max(len(item.ids) for item in batch) - start
    ids = torch.tensor([item.ids[start:] + [pad] * (width + start - len(item.ids)) for item in batch])
    labels = torch.tensor([item.labels[start:] + [-100] * (width + start - len(item.labels)) for item in batch])
    if start:
        cache = model.model(input_ids=torch.tensor([prefix]), use_cache=True).past_key_values
        for layer in range(len(cache.key_cache)):  # the gradient of a broadcast sums over the batch
            cache.key_cache[layer] = cache.key_cache[layer].expand(size, -1, -1, -1)
            cache.value_cache[layer] = cache.value_cache[layer].expand(size, -1, -1, -1)
        positions = torch.arange(start, start + width)
        hidden = model.model(
            input_ids=ids,
            past_key_values=cache,
            position_ids=positions[None].expand(size, -1),
            cache_position=positions,
            use_cache=True,
        ).last_hidden_state
    else:
        hidden = model.model(input_ids=ids).last_hidden_state
    # Right padding under a causal mask cannot affect real tokens; logits only where a loss is taken.
    keep = labels != -100
    return torch.nn.functional.cross_entropy(model.lm_head(hidden[keep]), labels[keep])


def train(spec: ToolModelSpec, tokenizer, dialect: Dialect, log=print, threads: int = 1):
    """Trains the model with torch on the CPU; returns (model, config, final loss)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(spec.seed)
    torch.set_num_threads(threads)
    generator = ConversationGenerator(dialect.name, spec.seed)
    encoded: list[Encoded] = []
    while len(encoded) < spec.steps * spec.batch_size * 1.1:  # spare: batches are formed per prefix
        item = encode(tokenizer, dialect, generator.conversation())
        if len(item.ids) <= spec.max_tokens:
            encoded.append(item)
    singles = [
        encode(tokenizer, dialect, generator.single()) for _ in range(int(spec.steps * spec.single_batch_size * 1.3))
    ]
    lengths = sorted(len(item.ids) for item in encoded)
    log(
        f"{len(encoded)} conversations, tokens: median {lengths[len(lengths) // 2]}, max {lengths[-1]}; "
        f"{len(singles)} single requests"
    )

    config = dict(TOOL_MODEL_CONFIG)
    config["vocab_size"] = len(tokenizer)
    end_ids = [tokenizer.convert_tokens_to_ids(tok) for tok in dialect.end_tokens]
    config["eos_token_id"] = end_ids if len(end_ids) > 1 else end_ids[0]
    config["bos_token_id"] = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    hf_config = {k: v for k, v in config.items() if k not in ("architectures", "model_type", "torch_dtype")}
    model = Qwen2ForCausalLM(Qwen2Config(**hf_config, attn_implementation="sdpa"))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, spec.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return spec.learning_rate * (step + 1) / warmup
        progress = (step - warmup) / max(1, spec.steps - warmup)
        return spec.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    pad = tokenizer.pad_token_id
    batches = _batches(encoded, spec.batch_size, spec.steps, random.Random(spec.seed))
    single_batches = _batches(singles, spec.single_batch_size, spec.steps, random.Random(spec.seed + 1))
    recent: list[float] = []
    started = time.perf_counter()
    for step, (prefix, batch) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss = _loss(model, prefix, batch, pad)
        loss.backward()
        if step < len(single_batches):
            _loss(model, *single_batches[step], pad).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        recent = [*recent, loss.item()][-20:]
        if step % 20 == 0 or step == len(batches) - 1:
            elapsed = time.perf_counter() - started
            log(
                f"step {step + 1}/{len(batches)} loss {loss.item():.4f} (conversations, mean of last 20: "
                f"{sum(recent) / len(recent):.4f}) {elapsed:.0f}s"
            )
    model.eval()
    return model, config, sum(recent) / len(recent)


def export(model, config: dict[str, Any], tokenizer, out_dir: Path, record: dict[str, Any], dialect: Dialect) -> Path:
    """Writes an mlx-lm loadable folder: float32 safetensors with mlx-lm's (= transformers') names."""
    import mlx.core as mx
    import numpy as np

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*"):
        if stale.is_file():
            stale.unlink()
    weights = {
        name: mx.array(tensor.detach().to("cpu").numpy().astype(np.float32))
        for name, tensor in model.state_dict().items()
        if name != "lm_head.weight" and "rotary_emb" not in name  # tied to the embeddings
    }
    mx.save_safetensors(str(out_dir / "model.safetensors"), weights, metadata={"format": "mlx"})
    tokenizer.save_pretrained(out_dir)
    if dialect.tokenizer_config_extra:
        tokenizer_config = out_dir / "tokenizer_config.json"
        data = json.loads(tokenizer_config.read_text(encoding="utf-8"))
        tokenizer_config.write_text(json.dumps({**data, **dialect.tokenizer_config_extra}, indent=2) + "\n")
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out_dir / "harness-model.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out_dir


# --- Checking what the model does --------------------------------------------------------------


def expected_answers(dialect: Dialect, example: Example) -> list[tuple[list[dict[str, Any]], str, dict]]:
    """(history before the answer, kind, the answer message) for every assistant answer."""
    out = []
    index = 0
    for position, message in enumerate(example.messages):
        if message["role"] == "assistant":
            out.append((example.messages[:position], example.kinds[index], message))
            index += 1
    return out


def evaluate(model, tokenizer, dialect: Dialect, seed: int, conversations: int = 24) -> dict[str, Any]:
    """Greedy answers on held-out conversations: share of exact calls / plain answers per kind."""
    import torch

    generator = ConversationGenerator(dialect.name, seed + 104729)
    end_ids = [tokenizer.convert_tokens_to_ids(tok) for tok in dialect.end_tokens]
    totals: dict[str, list[int]] = {}
    failures: list[str] = []
    for _ in range(conversations):
        example = generator.conversation()
        for history, kind, answer in expected_answers(dialect, example):
            prompt = tokenizer.apply_chat_template(
                history, tools=example.tools, tokenize=False, add_generation_prompt=True
            )
            ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
            with torch.no_grad():
                out = model.generate(
                    ids, max_new_tokens=96, do_sample=False, eos_token_id=end_ids, pad_token_id=tokenizer.pad_token_id
                )
            text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=False)
            content, calls = parse_output(dialect.name, text)
            if answer.get("tool_calls"):
                want = [
                    {
                        "name": c["function"]["name"],
                        "arguments": json.loads(c["function"]["arguments"])
                        if isinstance(c["function"]["arguments"], str)
                        else c["function"]["arguments"],
                    }
                    for c in answer["tool_calls"]
                ]
                ok = calls == want
            else:
                ok = not calls and bool(content)
            totals.setdefault(kind, [0, 0])
            totals[kind][0] += int(ok)
            totals[kind][1] += 1
            if not ok and len(failures) < 8:
                failures.append(f"[{kind}] {history[-1]['content']!r} -> {text!r}")
    return {"accuracy": {k: f"{v[0]}/{v[1]}" for k, v in sorted(totals.items())}, "failures": failures}


def build_tool_model(
    dialect: str, out_dir: Path, seed: int | None = None, steps: int | None = None, log=print, threads: int = 1
) -> Path:
    """Generates the data, trains, evaluates and writes one tool-call model folder."""
    import torch
    import transformers

    spec = next(s for s in TOOL_MODELS.values() if s.dialect == dialect)
    overrides = {k: v for k, v in (("seed", seed), ("steps", steps)) if v is not None}
    spec = ToolModelSpec(**{**spec.__dict__, **overrides})
    info = DIALECTS[dialect]
    started = time.perf_counter()
    tokenizer = build_tokenizer(info, spec.seed)
    model, config, final_loss = train(spec, tokenizer, info, log=log, threads=threads)
    train_seconds = time.perf_counter() - started
    report = evaluate(model, tokenizer, info, spec.seed)
    log(f"trained in {train_seconds:.0f}s, final loss {final_loss:.4f}; held-out: {report['accuracy']}")
    for failure in report["failures"]:
        log(f"  miss: {failure}")
    record = {
        "builder": "harness.models.training.build_tool_model",
        "name": spec.name,
        "dialect": dialect,
        "seed": spec.seed,
        "steps": spec.steps,
        "batch_size": spec.batch_size,
        "single_batch_size": spec.single_batch_size,
        "learning_rate": spec.learning_rate,
        "layers": TOOL_MODEL_CONFIG["num_hidden_layers"],
        "final_loss": round(final_loss, 4),
        "held_out_accuracy": report["accuracy"],
        "trained_with": (
            f"torch {torch.__version__} (CPU, {threads} thread(s)), transformers {transformers.__version__}"
        ),
    }
    return export(model, config, tokenizer, out_dir, record, DIALECTS[dialect])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.models.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialect", required=True, choices=[*DIALECTS, "all"])
    parser.add_argument("--out", type=Path, help="output folder (default: the committed model folder)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (the committed models were trained with 1: results can differ with more)",
    )
    args = parser.parse_args(argv)
    dialects = list(DIALECTS) if args.dialect == "all" else [args.dialect]
    for dialect in dialects:
        name = next(s.name for s in TOOL_MODELS.values() if s.dialect == dialect)
        out = args.out if (args.out and len(dialects) == 1) else tool_model_path(name)
        path = build_tool_model(
            dialect, out, seed=args.seed, steps=args.steps, log=lambda msg: print(msg, flush=True), threads=args.threads
        )
        print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

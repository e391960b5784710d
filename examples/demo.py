"""`make demo`: ingest the sample policy corpus, ask the same questions as two users, train and use a
support-triage classifier, run the two hybrid pipelines (compliance copilot, support triage), and finally
serve the project with `ragtune serve` and ask the same question over HTTP as alice and bob, each with an API key.

alice (group retail) may read the public and retail policies; bob (group media) the public and media ones.
Each answer cites only what its asker may read, so the two users get different answers and sources.
Runs the real `ragtune` commands in-process (so the model loads once) and prints each command first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ragtune.cli import app
from ragtune.server.local import free_port, wait_ready

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "policies" / "corpus"
QUESTIONS = HERE / "data" / "policies" / "demo_questions.txt"
PROJECT = HERE.parent / ".demo"
USERS = {"alice": "retail", "bob": "media"}
console = Console()


def ragtune(*args: str, quiet: bool = False) -> str:
    """Run one `ragtune` command in this process, echoing it; returns what it printed."""
    if not quiet:
        console.print(f"\n[bold cyan]$ ragtune {' '.join(args)}[/bold cyan]")
    buf = StringIO()
    try:
        with redirect_stdout(buf) if quiet else redirect_stdout(sys.stdout):
            app(list(args), standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    return buf.getvalue()


def main() -> None:
    """Run the demo end to end."""
    if "--fresh" in sys.argv and PROJECT.exists():
        shutil.rmtree(PROJECT)
    if not (PROJECT / "ragtune.yaml").exists():
        ragtune("init", str(PROJECT))
    ragtune("ingest", str(CORPUS), "--project", str(PROJECT))
    questions = [q.strip() for q in QUESTIONS.read_text(encoding="utf-8").splitlines() if q.strip()]
    cited: dict[tuple[str, str], set[str]] = {}
    for question in questions:
        console.rule(f"[bold]{question}")
        for user, group in USERS.items():
            ragtune("ask", question, "--user", user, "--groups", group, "--project", str(PROJECT))
            raw = ragtune("ask", question, "--user", user, "--groups", group, "--json", "--project",
                          str(PROJECT), quiet=True)
            answer = json.loads(raw)
            cited[(question, user)] = {Path(c["path"]).parent.name + "/" + Path(c["path"]).name
                                       for c in answer["citations"]}
    console.rule("[bold]What each user's answers cited")
    for (question, user), paths in cited.items():
        console.print(f"[bold]{user:5s}[/bold] {question[:60]}… → {', '.join(sorted(paths)) or '(abstained)'}")
    for user, group in USERS.items():
        other = {g for u, g in USERS.items() if u != user}
        leaked = [p for (_, u), ps in cited.items() if u == user for p in ps if p.split("/")[0] in other]
        if leaked:
            raise SystemExit(f"demo failed: {user} was shown {leaked}, outside group {group}")
    console.print("\n[green]Each user was answered only from policies their groups may read.[/green]")
    tuning_demo()
    pipelines_demo()
    service_demo(questions[0])


def tuning_demo() -> None:
    """Train a support-triage classifier on the banking77 slice, then route a few messages with it."""
    console.rule("[bold]Fine-tuning: a calibrated support-triage classifier")
    data = HERE / "data" / "banking77"
    ragtune("train", str(data / "train.csv"), "--label-col", "category", "--name", "triage", "--method", "head",
            "--test", str(data / "test.csv"), "--threshold", "0.6", "--project", str(PROJECT))
    for message in ("I lost my card on the train yesterday", "Why was I charged for taking out cash?",
                    "Is the app available in French?"):
        ragtune("classify", message, "--model", "triage", "--top-k", "2", "--project", str(PROJECT))


def pipelines_demo() -> None:
    """Hybrid pipelines: the compliance copilot as two users, then support triage with drafted replies."""
    console.rule("[bold]Hybrid: compliance copilot (RAG answer + tuned policy-category classifier + routing)")
    ragtune("train", str(HERE / "data" / "policies" / "advisor_questions.csv"), "--text-col", "question",
            "--label-col", "category", "--name", "policy-category", "--method", "head", "--project", str(PROJECT))
    question = "Do you share my personal information with vendors who help fulfill my purchases?"
    for user, group in USERS.items():
        ragtune("run", "compliance-copilot", question, "--user", user, "--groups", group, "--project", str(PROJECT))
        result = json.loads(ragtune("run", "compliance-copilot", question, "--user", user, "--groups", group,
                                    "--json", "--project", str(PROJECT), quiet=True))
        folders = {Path(c["path"]).parent.name for c in (result["answer"] or {}).get("citations", [])}
        if folders - {"public", group}:
            raise SystemExit(f"demo failed: the copilot showed {user} policies from {folders - {'public', group}}")
    ragtune("run", "compliance-copilot", "We received a subpoena about a user's data. What does our policy say?",
            "--user", "alice", "--groups", "retail", "--project", str(PROJECT))

    console.rule("[bold]Hybrid: support triage (tuned intent classifier routes; RAG drafts self-service replies)")
    help_project = PROJECT / "help"
    if not (help_project / "ragtune.yaml").exists():
        ragtune("init", str(help_project))
    ragtune("ingest", str(HERE / "data" / "help" / "articles"), "--project", str(help_project))
    for message in ("When will my new card arrive?", "Someone stole my bag with my card in it",
                    "Is the app available in French?"):
        ragtune("run", "support-triage", message, "--user", "carol", "--project", str(PROJECT))


def service_demo(question: str) -> None:
    """Serve the project briefly; alice and bob each ask over HTTP with their own API key (the OpenAI client
    against /v1/chat/completions), and their citations differ because their keys carry different groups."""
    from openai import OpenAI

    from ragtune.project import Project

    console.rule("[bold]Service: ragtune serve, two API keys, the OpenAI client")
    store = Project.open(PROJECT).key_store
    keys = {}
    for user, group in USERS.items():
        console.print(f"[bold cyan]$ ragtune keys create --user {user} --groups {group} --role reader[/bold cyan]")
        _, keys[user] = store.create(user, [group], "reader", note="make demo")
    port = free_port()
    console.print(f"[bold cyan]$ ragtune serve --port {port}[/bold cyan]")
    env = {**os.environ, "RAGTUNE_PROJECT_DIR": str(PROJECT)}
    server = subprocess.Popen([str(Path(sys.executable).with_name("ragtune")), "serve", "--port", str(port),
                               "--project", str(PROJECT)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(url, 120, alive=lambda: server.poll() is None):
            raise SystemExit("demo failed: ragtune serve did not become ready "
                             f"(run `ragtune serve --project {PROJECT}` to see why)")
        cited: dict[str, set[str]] = {}
        for user, group in USERS.items():
            client = OpenAI(base_url=f"{url}/v1", api_key=keys[user], max_retries=0)
            reply = client.chat.completions.create(model="ragtune", messages=[{"role": "user", "content": question}])
            citations = (reply.model_extra or {}).get("citations", [])
            cited[user] = {Path(c["path"]).parent.name + "/" + Path(c["path"]).name for c in citations}
            console.print(f"[bold]{user}[/bold] (key with group {group}) → POST /v1/chat/completions")
        console.print(f"\n{escape(question)}")
        for user in USERS:
            console.print(f"  [bold]{user:5s}[/bold] cited: {escape(', '.join(sorted(cited[user])) or '(abstained)')}")
        for user, group in USERS.items():
            outside = {p for p in cited[user] if p.split("/")[0] not in {"public", group}}
            if outside:
                raise SystemExit(f"demo failed: the server showed {user} {sorted(outside)}, outside group {group}")
        if cited["alice"] == cited["bob"]:
            raise SystemExit("demo failed: alice and bob got the same citations over HTTP")
        console.print("[green]Over HTTP too, each key was answered only from what its groups may read.[/green]")
    finally:
        server.terminate()
        server.wait(timeout=30)
        for record in store.list():  # the demo's keys do not outlive it
            if record.note == "make demo" and not record.revoked:
                store.revoke(record.key_id)


if __name__ == "__main__":
    main()

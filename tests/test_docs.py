"""The generated docs must match the machines they are generated from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_generator(name: str = "gen_machines"):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"scripts/{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_machine_diagrams_are_fresh() -> None:
    generator = _load_generator()
    stale = "docs/machines.md is stale: run python scripts/gen_machines.py"
    assert (ROOT / "docs/machines.md").read_text() == generator.render(), stale


def test_diagrams_name_every_state() -> None:
    from prefork.core import MasterState, WorkerState

    text = (ROOT / "docs/machines.md").read_text()
    for state in [*WorkerState, *MasterState]:
        assert f'state "{state.value}"' in text


def test_the_options_table_is_fresh() -> None:
    generator = _load_generator("gen_options")
    guide = (ROOT / "docs/guide.md").read_text()
    stale = "docs/guide.md's options table is stale: run python scripts/gen_options.py"
    assert guide == generator.render(guide), stale


def test_the_options_table_names_every_option_with_its_scope() -> None:
    from prefork.options import OPTIONS

    guide = (ROOT / "docs/guide.md").read_text()
    for option in OPTIONS:
        scope_and_hup = f"| {option.scope} | {'yes' if option.reloadable else 'restart'} |"
        row = next(line for line in guide.splitlines() if line.startswith(f"| `{option.name}` |"))
        assert scope_and_hup in row, option.name


# --- every code example runs --------------------------------------------------------------------
#
# Each python, toml or sh block of the README and the guide shows a file of examples/
# (``<!-- example: examples/NAME -->`` just above it; the block is the whole file), and
# the tests below run every one of those files: jobs under the real command until they
# have done some work, then QUIT; scripts as they are; config files with --check-config
# and for real; each command with --check-config.

import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

DOCS = ("README.md", "docs/guide.md")
CODE_BLOCK = re.compile(r"^(<!-- (example|not an example): (.+?) -->\n)?```(python|toml|sh)\n"
                        r"(.*?)^```$", re.MULTILINE | re.DOTALL)
# job examples: (MODULE:ATTR, the kind of file its work leaves in EXAMPLES_DIR)
JOBS = [("examples.mailer:Mailer", "sent"), ("examples.consume:consume", "handled"),
        ("examples.idle:Consumer", "handled"), ("examples.hand_back:Mailer", "sent")]
SCRIPTS = [("examples/run_pool.py", "sent"), ("examples/pools.py", "handled"),
           ("examples/ten_lines.py", "sent")]


def code_blocks(doc: str) -> list[tuple[str | None, str, str]]:
    """(the file it shows or None, the language, the text) of each code block of ``doc``."""
    text = (ROOT / doc).read_text()
    return [(path if kind == "example" else f"not: {path}" if kind else None, language, body)
            for _, kind, path, language, body in CODE_BLOCK.findall(text)]


def shown_files() -> set[str]:
    return {path for doc in DOCS for path, _, _ in code_blocks(doc)
            if path and not path.startswith("not: ")}


@pytest.mark.parametrize("doc", DOCS)
def test_every_code_block_shows_an_example_file_as_it_is(doc: str) -> None:
    blocks = code_blocks(doc)
    assert blocks
    for path, language, body in blocks:
        assert path is not None, f"{doc}: a {language} block is not an example file:\n{body}"
        if path.startswith("not: "):
            continue
        assert (ROOT / path).read_text() == body, f"{doc} shows {path} other than it is"


def test_every_example_file_shown_is_run_by_a_test() -> None:
    run = {f"examples/{ref.split(':')[0].split('.')[1]}.py" for ref, _ in JOBS}
    run |= {path for path, _ in SCRIPTS}
    run |= {"examples/sisyphus.py", "examples/prefork.toml", "examples/pools.toml",
            "examples/commands.sh"}
    assert shown_files() <= run, shown_files() - run


def _environment(tmp_path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PREFORK_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    env["EXAMPLES_DIR"] = str(tmp_path)
    return env


def _run_until_it_works(tmp_path, command: list[str], kind: str) -> None:
    """Start ``command`` (a master), wait for work in ``kind`` files, QUIT it: exit 0."""
    process = subprocess.Popen(command, cwd=ROOT, env=_environment(tmp_path),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not any(path.read_text() for path in tmp_path.glob(f"{kind}.*")):
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, f"no {kind} work in 20s"
            time.sleep(0.05)
        process.send_signal(signal.SIGQUIT)
        out, _ = process.communicate(timeout=20)
        assert process.returncode == 0, out.decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("job", "kind"), JOBS)
def test_the_job_examples_run_under_the_command(tmp_path, job: str, kind: str) -> None:
    _run_until_it_works(tmp_path, [sys.executable, "-m", "prefork", "run", job,
                                   "--workers", "2"], kind)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("script", "kind"), SCRIPTS)
def test_the_script_examples_run(tmp_path, script: str, kind: str) -> None:
    _run_until_it_works(tmp_path, [sys.executable, script], kind)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("config", ["examples/prefork.toml", "examples/pools.toml"])
def test_the_config_file_examples_check_and_run(tmp_path, config: str) -> None:
    command = [sys.executable, "-m", "prefork", "run", "-c", config]
    checked = subprocess.run([*command, "--check-config"], cwd=ROOT, capture_output=True,
                             text=True, env=_environment(tmp_path), timeout=30)
    assert checked.returncode == 0, checked.stderr
    _run_until_it_works(tmp_path, command, "sent")


@pytest.mark.timeout(60)
def test_the_sisyphus_example_runs_to_its_end(tmp_path) -> None:
    done = subprocess.run([sys.executable, "examples/sisyphus.py"], cwd=ROOT, timeout=40,
                          capture_output=True, text=True, env=_environment(tmp_path))
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(60)
def test_the_commands_of_the_guide_check(tmp_path) -> None:
    for line in (ROOT / "examples/commands.sh").read_text().splitlines():
        words = line.split()
        command = [sys.executable, "-m", "prefork"] if words[:3] == ["python", "-m", "prefork"] \
            else [sys.executable, "-m", "prefork"] if words[0] == "prefork" else None
        assert command is not None, line
        args = words[3:] if words[0] == "python" else words[1:]
        done = subprocess.run([*command, *args, "--check-config"], cwd=ROOT, timeout=30,
                              capture_output=True, text=True, env=_environment(tmp_path))
        assert done.returncode == 0, (line, done.stderr)

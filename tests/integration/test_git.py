"""swarm.runtime.git against real git repositories in temp directories: no mocks."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from swarm.errors import EXIT_BAD_INPUT, BadInput, SwarmError
from swarm.runtime.git import DEFAULT_IDENTITY, GitRepo, Worktree, open_repo

AGENT = "swarm agent-1 <agent-1@swarm.test>"


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git for test setup and inspection; fail the test on a non-zero exit."""
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(["git", *args], cwd=cwd, env=full_env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit_file(cwd: Path, name: str, text: str, message: str) -> str:
    """Write a file, commit it with the repo's configured identity, return the new sha."""
    (cwd / name).write_text(text)
    git(cwd, "add", name)
    git(cwd, "commit", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD")


@pytest.fixture(autouse=True)
def no_user_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the machine's git config and identity: tests see a fresh machine with no global identity."""
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in list(os.environ):
        if name.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_")) or name in ("GIT_DIR", "GIT_WORK_TREE"):
            monkeypatch.delenv(name)


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    """A repository on branch main with one commit and a local identity for the tests' own commits."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.com")
    commit_file(path, "README.md", "hello\n", "initial")
    return path


@pytest.fixture
def repo(repo_dir: Path) -> GitRepo:
    """The test repository opened through the module under test."""
    return open_repo(repo_dir)


def wt_path(repo: GitRepo, name: str) -> Path:
    return repo.root / ".worktrees" / name


def add_agent(repo: GitRepo, name: str, base: str = "main") -> Worktree:
    """A worktree for ``name`` on branch ``swarm/e/<name>``."""
    path = wt_path(repo, name)
    repo.add_worktree(path, f"swarm/e/{name}", base)
    return repo.worktree(path)


# --- open_repo ---------------------------------------------------------------------------------------------


def test_open_repo_rejects_a_directory_that_is_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(BadInput, match="not a git repository") as info:
        open_repo(plain)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert info.value.hint is not None
    assert "git init" in info.value.hint


def test_open_repo_rejects_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such directory"):
        open_repo(tmp_path / "nowhere")


def test_open_repo_rejects_a_repository_without_commits(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(BadInput, match="no commits") as info:
        open_repo(empty)
    assert "first commit" in info.value.render()


def test_open_repo_from_a_subdirectory_or_a_worktree_finds_the_main_top_level(repo_dir: Path, repo: GitRepo) -> None:
    sub = repo_dir / "src" / "pkg"
    sub.mkdir(parents=True)
    assert open_repo(sub).root == repo_dir.resolve()
    worktree = add_agent(repo, "agent-1")
    assert open_repo(worktree.path).root == repo_dir.resolve()


def test_head_resolve_and_current_branch(repo_dir: Path, repo: GitRepo) -> None:
    head = git(repo_dir, "rev-parse", "HEAD")
    assert repo.head_sha() == head
    assert repo.resolve("main") == head
    assert repo.resolve(head[:8]) == head
    assert repo.current_branch() == "main"
    git(repo_dir, "checkout", "-q", "--detach")
    assert repo.current_branch() is None


@pytest.mark.parametrize("ref", ["no-such-branch", "--all", ""])
def test_resolve_unknown_ref_names_it(repo: GitRepo, ref: str) -> None:
    with pytest.raises(BadInput) as info:
        repo.resolve(ref)
    assert repr(ref) in info.value.message


def test_is_dirty(repo_dir: Path, repo: GitRepo) -> None:
    assert not repo.is_dirty()
    (repo_dir / "new.txt").write_text("x")
    assert repo.is_dirty()
    (repo_dir / "new.txt").unlink()
    (repo_dir / "README.md").write_text("changed\n")
    assert repo.is_dirty()
    git(repo_dir, "checkout", "--", "README.md")
    (repo_dir / ".gitignore").write_text("*.log\n")
    git(repo_dir, "add", ".gitignore")
    git(repo_dir, "commit", "-q", "-m", "ignore logs")
    (repo_dir / "debug.log").write_text("ignored")
    assert not repo.is_dirty()


# --- ensure_excluded ---------------------------------------------------------------------------------------


def test_ensure_excluded_ignores_without_touching_gitignore_and_is_idempotent(repo_dir: Path, repo: GitRepo) -> None:
    repo.ensure_excluded(".swarm/", ".worktrees/")
    repo.ensure_excluded(".swarm/", ".worktrees/")
    (repo_dir / ".swarm").mkdir()
    (repo_dir / ".swarm" / "db.sqlite").write_text("x")
    worktree = add_agent(repo, "agent-1")

    assert not (repo_dir / ".gitignore").exists()
    assert not repo.is_dirty()
    git(repo_dir, "check-ignore", "-q", ".swarm/db.sqlite")
    git(repo_dir, "check-ignore", "-q", ".worktrees/agent-1")
    lines = (repo_dir / ".git" / "info" / "exclude").read_text().splitlines()
    assert lines.count(".swarm/") == 1
    assert lines.count(".worktrees/") == 1
    # Shared by the linked worktrees, where a .swarm directory must not count as an agent's change either.
    (worktree.path / ".swarm").mkdir()
    (worktree.path / ".swarm" / "state").write_text("x")
    assert not worktree.has_changes()


def test_ensure_excluded_creates_info_dir_and_appends_after_a_last_line_without_newline(
    repo_dir: Path, repo: GitRepo
) -> None:
    info = repo_dir / ".git" / "info"
    (info / "exclude").write_text("*.tmp")  # no final newline
    repo.ensure_excluded(".swarm/")
    assert (info / "exclude").read_text() == "*.tmp\n.swarm/\n"
    (info / "exclude").unlink()
    info.rmdir()
    repo.ensure_excluded(".swarm/")
    assert (info / "exclude").read_text() == ".swarm/\n"


# --- add_worktree ------------------------------------------------------------------------------------------


def test_add_worktree_creates_branch_from_base_and_is_idempotent(repo_dir: Path, repo: GitRepo) -> None:
    base = repo.head_sha()
    commit_file(repo_dir, "later.txt", "later\n", "after base")
    path = wt_path(repo, "agent-1")

    assert repo.add_worktree(path, "swarm/e/agent-1", base) is True
    assert repo.branch_exists("swarm/e/agent-1")
    worktree = repo.worktree(path)
    assert worktree.head_sha() == base
    assert worktree.branch() == "swarm/e/agent-1"
    assert (path / "README.md").exists()
    assert not (path / "later.txt").exists()

    assert repo.add_worktree(path, "swarm/e/agent-1", "main") is False
    assert worktree.head_sha() == base


def test_add_worktree_reuses_an_existing_branch_with_its_commits(repo: GitRepo) -> None:
    worktree = add_agent(repo, "agent-1")
    (worktree.path / "work.txt").write_text("earlier work\n")
    earlier = worktree.commit_all("t1: earlier", AGENT)
    repo.remove_worktree(worktree.path)
    assert repo.branch_exists("swarm/e/agent-1")

    assert repo.add_worktree(worktree.path, "swarm/e/agent-1", "main") is True
    again = repo.worktree(worktree.path)
    assert again.head_sha() == earlier
    assert (again.path / "work.txt").read_text() == "earlier work\n"


def test_add_worktree_refuses_a_path_that_exists_and_is_not_a_worktree(repo: GitRepo) -> None:
    path = wt_path(repo, "agent-1")
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("user data")
    with pytest.raises(SwarmError, match="exists and is not a worktree") as info:
        repo.add_worktree(path, "swarm/e/agent-1", "main")
    assert info.value.hint
    assert (path / "keep.txt").read_text() == "user data"
    assert not repo.branch_exists("swarm/e/agent-1")


def test_add_worktree_refuses_a_worktree_on_another_branch(repo: GitRepo) -> None:
    worktree = add_agent(repo, "agent-1")
    with pytest.raises(SwarmError, match="already a worktree on branch 'swarm/e/agent-1'"):
        repo.add_worktree(worktree.path, "swarm/e/other", "main")


def test_add_worktree_refuses_a_branch_checked_out_elsewhere(repo: GitRepo) -> None:
    add_agent(repo, "agent-1")
    with pytest.raises(SwarmError, match="is checked out in"):
        repo.add_worktree(wt_path(repo, "agent-2"), "swarm/e/agent-1", "main")
    with pytest.raises(SwarmError, match="is checked out in"):
        repo.add_worktree(wt_path(repo, "agent-3"), "main", "main")


def test_add_worktree_rejects_bad_branch_and_base(repo: GitRepo) -> None:
    with pytest.raises(BadInput, match="invalid branch name"):
        repo.add_worktree(wt_path(repo, "a"), "bad..name", "main")
    with pytest.raises(BadInput, match="invalid git branch"):
        repo.add_worktree(wt_path(repo, "a"), "-x", "main")
    with pytest.raises(BadInput, match="unknown git ref 'nope'"):
        repo.add_worktree(wt_path(repo, "a"), "swarm/e/a", "nope")


def test_add_worktree_recreates_a_worktree_whose_directory_was_deleted(repo: GitRepo) -> None:
    worktree = add_agent(repo, "agent-1")
    subprocess.run(["rm", "-rf", str(worktree.path)], check=True)
    assert repo.add_worktree(worktree.path, "swarm/e/agent-1", "main") is True
    assert repo.worktree(worktree.path).branch() == "swarm/e/agent-1"
    # A deleted worktree does not hold its branch either: it can move to a new path.
    subprocess.run(["rm", "-rf", str(worktree.path)], check=True)
    moved = wt_path(repo, "agent-1b")
    assert repo.add_worktree(moved, "swarm/e/agent-1", "main") is True
    assert [w.path for w in repo.list_worktrees()] == [repo.root, moved]


def test_eight_threads_add_eight_worktrees_at_once(repo: GitRepo) -> None:
    names = [f"agent-{i}" for i in range(1, 9)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda n: repo.add_worktree(wt_path(repo, n), f"swarm/e/{n}", "main"), names))
    assert created == [True] * 8
    branches = {w.branch for w in repo.list_worktrees()}
    assert branches == {"main", *(f"swarm/e/{n}" for n in names)}
    for name in names:
        assert repo.worktree(wt_path(repo, name)).head_sha() == repo.head_sha()


def test_list_worktrees(repo_dir: Path, repo: GitRepo) -> None:
    worktree = add_agent(repo, "agent-1")
    git(worktree.path, "checkout", "-q", "--detach")
    listed = repo.list_worktrees()
    assert [w.path for w in listed] == [repo_dir.resolve(), worktree.path]
    main, agent = listed
    assert (main.branch, main.head, main.prunable) == ("main", repo.head_sha(), False)
    assert (agent.branch, agent.head, agent.prunable) == (None, repo.head_sha(), False)
    subprocess.run(["rm", "-rf", str(worktree.path)], check=True)
    assert repo.list_worktrees()[1].prunable


def test_worktree_refuses_a_path_that_is_not_a_worktree_top(repo_dir: Path, repo: GitRepo) -> None:
    (repo_dir / "src").mkdir()
    with pytest.raises(SwarmError, match="not a worktree"):
        repo.worktree(repo_dir / "src")
    with pytest.raises(SwarmError, match="main work tree"):
        repo.worktree(repo_dir)
    with pytest.raises(SwarmError, match="does not exist"):
        repo.worktree(repo_dir / "missing")


# --- remove, prune, branches -------------------------------------------------------------------------------


def test_remove_worktree_clean_dirty_and_gone(repo: GitRepo) -> None:
    clean = add_agent(repo, "agent-1")
    repo.remove_worktree(clean.path)
    assert not clean.path.exists()
    assert [w.path for w in repo.list_worktrees()] == [repo.root]
    repo.remove_worktree(clean.path)  # already gone: no error

    dirty = add_agent(repo, "agent-2")
    (dirty.path / "scratch.txt").write_text("uncommitted")
    with pytest.raises(SwarmError, match="remove worktree") as info:
        repo.remove_worktree(dirty.path)
    assert info.value.hint is not None
    assert "force" in info.value.hint
    assert "\n" not in info.value.render()
    assert dirty.path.exists()
    git(repo.root, "worktree", "lock", str(dirty.path))
    with pytest.raises(SwarmError, match="locked") as info:
        repo.remove_worktree(dirty.path, force=True)
    assert info.value.hint is not None
    assert "git worktree unlock" in info.value.hint
    git(repo.root, "worktree", "unlock", str(dirty.path))
    repo.remove_worktree(dirty.path, force=True)
    assert not dirty.path.exists()
    assert repo.branch_exists("swarm/e/agent-2")  # the branch keeps the agent's commits


def test_prune_forgets_deleted_worktree_directories(repo: GitRepo) -> None:
    worktree = add_agent(repo, "agent-1")
    subprocess.run(["rm", "-rf", str(worktree.path)], check=True)
    repo.prune_worktrees()
    assert [w.path for w in repo.list_worktrees()] == [repo.root]
    repo.remove_worktree(worktree.path)  # gone and unregistered: still no error


def test_delete_branch_merged_unmerged_forced_and_missing(repo_dir: Path, repo: GitRepo) -> None:
    merged = add_agent(repo, "agent-1")
    unmerged = add_agent(repo, "agent-2")
    (unmerged.path / "work.txt").write_text("work\n")
    unmerged.commit_all("t2: work", AGENT)
    repo.remove_worktree(merged.path)
    repo.remove_worktree(unmerged.path)

    assert repo.is_merged("swarm/e/agent-1", "main")
    assert not repo.is_merged("swarm/e/agent-2", "main")
    assert repo.delete_branch("swarm/e/agent-1") is True
    assert not repo.branch_exists("swarm/e/agent-1")
    assert repo.delete_branch("swarm/e/agent-2") is False
    assert repo.branch_exists("swarm/e/agent-2")
    assert repo.delete_branch("swarm/e/agent-2", force=True) is True
    assert not repo.branch_exists("swarm/e/agent-2")
    assert repo.delete_branch("swarm/e/agent-2") is False


def test_delete_branch_checked_out_in_a_worktree_is_an_error(repo: GitRepo) -> None:
    add_agent(repo, "agent-1")
    with pytest.raises(SwarmError, match="delete branch 'swarm/e/agent-1'"):
        repo.delete_branch("swarm/e/agent-1", force=True)


def test_commits_between_newest_first(repo: GitRepo) -> None:
    worktree = add_agent(repo, "agent-1")
    shas = []
    for i in (1, 2):
        (worktree.path / f"f{i}.txt").write_text(str(i))
        sha = worktree.commit_all(f"t{i}: step {i}", AGENT)
        assert sha is not None
        shas.append(sha)
    commits = repo.commits_between("main", "swarm/e/agent-1")
    assert [c.sha for c in commits] == shas[::-1]
    assert [c.subject for c in commits] == ["t2: step 2", "t1: step 1"]
    assert {c.author for c in commits} == {AGENT}
    assert repo.commits_between("swarm/e/agent-1", "main") == []


# --- commit_all --------------------------------------------------------------------------------------------


def test_commit_all_commits_every_change_with_the_given_identity(repo: GitRepo) -> None:
    worktree = add_agent(repo, "agent-1")
    before = worktree.head_sha()
    (worktree.path / "README.md").write_text("edited\n")
    (worktree.path / "new").mkdir()
    (worktree.path / "new" / "file.txt").write_text("new\n")

    sha = worktree.commit_all("t1: do it", AGENT)

    assert sha == worktree.head_sha() != before
    assert not worktree.has_changes()
    shown = git(worktree.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s|%P")
    assert shown == f"{AGENT}|{AGENT}|t1: do it|{before}"
    assert git(worktree.path, "show", "--name-only", "--format=", "HEAD").splitlines() == [
        "README.md",
        "new/file.txt",
    ]


def test_commit_all_with_nothing_to_commit(repo: GitRepo) -> None:
    worktree = add_agent(repo, "agent-1")
    before = worktree.head_sha()
    assert worktree.commit_all("t1: nothing", AGENT, allow_empty=False) is None
    assert worktree.head_sha() == before
    empty = worktree.commit_all("t1: nothing", AGENT)
    assert empty is not None
    assert empty != before
    assert git(worktree.path, "rev-parse", "HEAD^") == before


def test_commit_all_works_with_no_git_identity_and_skips_hooks(tmp_path: Path) -> None:
    path = tmp_path / "bare-identity"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    # Forbid git from guessing a name from the host, as on a fresh machine with no identity.
    git(path, "config", "user.useConfigOnly", "true")
    ident = {"GIT_AUTHOR_NAME": "Setup", "GIT_AUTHOR_EMAIL": "s@x", "GIT_COMMITTER_NAME": "Setup"}
    (path / "a.txt").write_text("a")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "initial", env={**ident, "GIT_COMMITTER_EMAIL": "s@x"})
    hook = path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    repo = open_repo(path)
    worktree = add_agent(repo, "agent-1")
    (worktree.path / "b.txt").write_text("b")

    sha = worktree.commit_all("t1: b", AGENT)

    assert sha is not None
    assert git(path, "log", "-1", "--format=%cn <%ce>", sha) == AGENT
    (worktree.path / "c.txt").write_text("c")
    assert worktree.stash("t2: partial") is not None


def test_commit_all_rejects_a_malformed_identity(repo: GitRepo) -> None:
    worktree = add_agent(repo, "agent-1")
    with pytest.raises(BadInput, match="invalid git identity"):
        worktree.commit_all("t1", "no email here")


# --- merge -------------------------------------------------------------------------------------------------


def test_merge_brings_in_dependency_commits_from_other_worktrees(repo: GitRepo) -> None:
    dep1, dep2, agent = add_agent(repo, "agent-1"), add_agent(repo, "agent-2"), add_agent(repo, "agent-3")
    (dep1.path / "one.txt").write_text("one\n")
    sha1 = dep1.commit_all("t1: one", AGENT)
    (dep2.path / "two.txt").write_text("two\n")
    sha2 = dep2.commit_all("t2: two", AGENT)
    assert sha1 is not None
    assert sha2 is not None

    result = agent.merge([sha1, sha2], "t3: merge dependencies", author=AGENT)

    assert result.ok
    assert result.merged == [sha1, sha2]
    assert result.conflicts == []
    assert result.ref is None
    assert (agent.path / "one.txt").read_text() == "one\n"
    assert (agent.path / "two.txt").read_text() == "two\n"
    assert not agent.has_changes()
    assert git(agent.path, "log", "-1", "--format=%s|%an <%ae>") == f"t3: merge dependencies|{AGENT}"

    again = agent.merge([sha1, sha2], "t3: merge dependencies")
    assert again.ok
    assert again.merged == []
    assert "already present" in again.detail


def test_merge_without_identity_falls_back_to_the_default(repo_dir: Path, repo: GitRepo) -> None:
    git(repo_dir, "config", "--unset", "user.name")
    git(repo_dir, "config", "--unset", "user.email")
    git(repo_dir, "config", "user.useConfigOnly", "true")
    dep, agent = add_agent(repo, "agent-1"), add_agent(repo, "agent-2")
    (dep.path / "one.txt").write_text("one\n")
    sha = dep.commit_all("t1: one", AGENT)
    assert sha is not None

    assert agent.merge([sha], "merge deps").ok
    assert git(agent.path, "log", "-1", "--format=%cn <%ce>") == DEFAULT_IDENTITY


def test_conflicting_merge_aborts_and_leaves_the_worktree_clean(repo: GitRepo) -> None:
    dep, agent = add_agent(repo, "agent-1"), add_agent(repo, "agent-2")
    (dep.path / "README.md").write_text("from the dependency\n")
    (dep.path / "dep-only.txt").write_text("dep\n")
    dep_sha = dep.commit_all("t1: rewrite readme", AGENT)
    assert dep_sha is not None
    (agent.path / "README.md").write_text("from the agent\n")
    agent.commit_all("t2: rewrite readme too", AGENT)
    head = agent.head_sha()

    result = agent.merge([dep_sha], "merge deps", author=AGENT)

    assert not result.ok
    assert result.conflicts == ["README.md"]
    assert result.ref == dep_sha
    assert result.merged == []
    assert "README.md" in result.detail
    assert agent.head_sha() == head
    assert not agent.has_changes()
    assert not (agent.path / "dep-only.txt").exists()
    assert (agent.path / "README.md").read_text() == "from the agent\n"


def criss_cross(repo: GitRepo) -> tuple[Worktree, Worktree]:
    """Two agents that merged each other's commits: their branches then have two merge bases."""
    one, two = add_agent(repo, "agent-1"), add_agent(repo, "agent-2")
    (one.path / "one.txt").write_text("one\n")
    sha1 = one.commit_all("t1: one", AGENT)
    (two.path / "two.txt").write_text("two\n")
    sha2 = two.commit_all("t2: two", AGENT)
    assert sha1 is not None
    assert sha2 is not None
    assert one.merge([sha2], "merge t2", author=AGENT).ok
    assert two.merge([sha1], "merge t1", author=AGENT).ok
    assert len(git(one.path, "merge-base", "--all", "HEAD", two.head_sha()).split()) == 2
    return one, two


def test_merge_with_several_merge_bases_makes_a_merge_commit_of_both(repo: GitRepo) -> None:
    one, two = criss_cross(repo)
    (one.path / "one.txt").write_text("one, changed by agent-1\n")
    one.commit_all("t3: change one", AGENT)
    (two.path / "three.txt").write_text("three\n")
    dep = two.commit_all("t4: three", AGENT)
    assert dep is not None
    head = one.head_sha()

    result = one.merge([dep], "merge t4", author=AGENT)

    assert result.ok
    assert result.merged == [dep]
    assert git(one.path, "log", "-1", "--format=%P|%s|%an <%ae>") == f"{head} {dep}|merge t4|{AGENT}"
    assert (one.path / "three.txt").read_text() == "three\n"
    assert (one.path / "one.txt").read_text() == "one, changed by agent-1\n"
    assert not one.has_changes()
    assert git(one.path, "symbolic-ref", "--short", "HEAD") == "swarm/e/agent-1"
    assert one.contains(dep)
    assert one.merge([dep], "merge t4 again").merged == []


def test_merge_that_no_single_merge_base_explains_still_merges(repo: GitRepo) -> None:
    """Each side changes a file the other merge base lacks: only git's virtual base merges them cleanly.

    Merging with one base alone (whichever ``merge-base --all`` lists first, an order that varies with
    commit times) sees an add/add conflict on the file that base does not have. CI once failed this way.
    """
    one, two = criss_cross(repo)
    (one.path / "one.txt").write_text("one, changed by agent-1\n")
    one.commit_all("t3: change one", AGENT)
    (two.path / "two.txt").write_text("two, changed by agent-2\n")
    dep = two.commit_all("t4: change two", AGENT)
    assert dep is not None
    head = one.head_sha()

    result = one.merge([dep], "merge t4", author=AGENT)

    assert result.ok, result.detail
    assert git(one.path, "log", "-1", "--format=%P|%s") == f"{head} {dep}|merge t4"
    assert (one.path / "one.txt").read_text() == "one, changed by agent-1\n"
    assert (one.path / "two.txt").read_text() == "two, changed by agent-2\n"
    assert not one.has_changes()


def test_conflicting_merge_with_several_merge_bases_aborts_cleanly(repo: GitRepo) -> None:
    one, two = criss_cross(repo)
    (one.path / "README.md").write_text("from agent-1\n")
    one.commit_all("t3: readme", AGENT)
    (two.path / "README.md").write_text("from agent-2\n")
    (two.path / "new.txt").write_text("new\n")
    dep = two.commit_all("t4: readme too", AGENT)
    assert dep is not None
    head = one.head_sha()

    result = one.merge([dep], "merge t4", author=AGENT)

    assert not result.ok
    assert result.conflicts == ["README.md"]
    assert result.ref == dep
    assert one.head_sha() == head
    assert not one.has_changes()
    assert not (one.path / "new.txt").exists()
    assert (one.path / "README.md").read_text() == "from agent-1\n"


def test_update_commit_graph_covers_every_branch(repo: GitRepo) -> None:
    one, two = criss_cross(repo)
    assert one.update_commit_graph()
    git(repo.root, "commit-graph", "verify")
    (two.path / "more.txt").write_text("more\n")
    two.commit_all("t5: more", AGENT)
    assert two.update_commit_graph()  # a new layer with the new commit
    git(repo.root, "commit-graph", "verify")


def test_merge_refuses_a_dirty_worktree_and_unknown_refs(repo: GitRepo) -> None:
    agent = add_agent(repo, "agent-1")
    with pytest.raises(BadInput, match="unknown git ref 'deadbeef'"):
        agent.merge(["deadbeef"], "merge")
    (agent.path / "scratch.txt").write_text("x")
    with pytest.raises(SwarmError, match="uncommitted changes"):
        agent.merge([repo.head_sha()], "merge")


# --- stash -------------------------------------------------------------------------------------------------


def test_stash_saves_tracked_and_untracked_changes_and_cleans_the_worktree(repo: GitRepo) -> None:
    one, two = add_agent(repo, "agent-1"), add_agent(repo, "agent-2")
    assert one.stash("nothing") is None
    (one.path / "README.md").write_text("partial edit\n")
    (one.path / "untracked.txt").write_text("new\n")
    head = one.head_sha()

    sha = one.stash("swarm: t1 attempt 1 (exit 1)")
    (two.path / "other.txt").write_text("other\n")
    other = two.stash("swarm: t2 attempt 1 (exit 1)")

    assert sha is not None
    assert other is not None
    assert sha != other
    assert not one.has_changes()
    assert one.head_sha() == head
    assert (one.path / "README.md").read_text() == "hello\n"
    assert git(one.path, "show", "--format=%s", "--no-patch", sha).endswith("swarm: t1 attempt 1 (exit 1)")
    assert git(one.path, "show", "--name-only", "--format=", f"{sha}^3") == "untracked.txt"
    assert git(one.path, "show", f"{sha}:README.md") == "partial edit"


# --- broken worktrees, branch switches, submodules (issue 12: points 4, 5, 8) -----------------------------

ALLOW_FILE = ["-c", "protocol.file.allow=always"]


@pytest.fixture
def with_submodule(repo_dir: Path, tmp_path: Path) -> Path:
    """Give the test repository a submodule ``sub`` (a local repository with one file); return its source."""
    source = tmp_path / "subsource"
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    git(source, "config", "user.name", "Sub User")
    git(source, "config", "user.email", "sub@example.com")
    commit_file(source, "lib.txt", "one\n", "sub initial")
    git(repo_dir, *ALLOW_FILE, "submodule", "add", "-q", str(source), "sub")
    git(repo_dir, "commit", "-q", "-m", "add submodule")
    return source


def test_heal_leaves_a_healthy_worktree_alone(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    assert wt.looks_healthy("swarm/e/a1")
    assert repo.heal_worktree(wt.path, "swarm/e/a1", leftovers="swarm: left") == []


def test_heal_recreates_a_deleted_worktree_from_its_branch(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    done = wt.commit_all("T1: one", AGENT)
    subprocess.run(["rm", "-rf", str(wt.path)], check=True)
    assert not wt.looks_healthy("swarm/e/a1")
    actions = repo.heal_worktree(wt.path, "swarm/e/a1", leftovers="swarm: left")
    assert actions == [f"the worktree {wt.path} was deleted; recreated it from swarm/e/a1"]
    assert repo.worktree(wt.path).head_sha() == done
    assert repo.worktree(wt.path).branch() == "swarm/e/a1"


def test_heal_recreates_an_emptied_worktree(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    for child in wt.path.iterdir():
        subprocess.run(["rm", "-rf", str(child)], check=True)
    actions = repo.heal_worktree(wt.path, "swarm/e/a1", leftovers="swarm: left")
    assert "recreated" in actions[0]
    assert (wt.path / "README.md").read_text() == "hello\n"


def test_heal_refuses_a_path_that_is_no_worktree_with_files_in_it(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    repo.remove_worktree(wt.path)
    wt.path.mkdir(parents=True)
    (wt.path / "precious.txt").write_text("mine\n")
    with pytest.raises(SwarmError, match="is no longer a git worktree"):
        repo.heal_worktree(wt.path, "swarm/e/a1", leftovers="swarm: left")
    assert (wt.path / "precious.txt").read_text() == "mine\n"


def test_heal_removes_a_stale_index_lock_but_not_one_a_live_process_holds(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    lock = Path(git(wt.path, "rev-parse", "--absolute-git-dir")) / "index.lock"
    lock.write_text("")
    assert not wt.looks_healthy("swarm/e/a1")
    actions = repo.heal_worktree(wt.path, "swarm/e/a1", leftovers="swarm: left")
    assert actions == [f"removed a stale {lock} (the git process that left it is gone)"]
    assert not lock.exists()
    wt.commit_all("T1: works again", AGENT)
    # Held open, as a running git holds it.
    with lock.open("w"), pytest.raises(SwarmError, match=f"held by the running process {os.getpid()}"):
        repo.heal_worktree(wt.path, "swarm/e/a1", leftovers="swarm: left")
    assert lock.exists()


def test_heal_stashes_leftovers_under_the_given_label_and_returns_to_the_branch(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    git(wt.path, "checkout", "-q", "-b", "elsewhere")
    commit_file(wt.path, "side.txt", "side\n", "made elsewhere")
    (wt.path / "loose.txt").write_text("loose\n")
    actions = repo.heal_worktree(wt.path, "swarm/e/a1", leftovers="swarm: left outside a task")
    assert "outside any task" in actions[0]
    assert "swarm: left outside a task" in git(repo.root, "stash", "list")
    assert actions[1] == "the agent left swarm/e/a1 for branch 'elsewhere'; brought its 1 commit onto swarm/e/a1"
    assert wt.branch() == "swarm/e/a1"
    assert (wt.path / "side.txt").exists()
    assert not wt.has_changes()


def test_commit_on_branch_brings_the_agents_branch_switch_back(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    git(wt.path, "checkout", "-q", "-b", "other")
    commit_file(wt.path, "mid.txt", "mid\n", "agent's own commit")
    (wt.path / "end.txt").write_text("end\n")
    result = wt.commit_on_branch("swarm/e/a1", "T1: task", AGENT)
    assert result.notes == ["the agent left swarm/e/a1 for branch 'other'; brought its 2 commits onto swarm/e/a1"]
    assert wt.branch() == "swarm/e/a1"
    assert git(repo.root, "rev-parse", "swarm/e/a1") == result.sha
    assert git(repo.root, "log", "-1", "--format=%s|%an", "swarm/e/a1") == "T1: task|swarm agent-1"
    assert git(repo.root, "show", "swarm/e/a1:end.txt") == "end"
    assert git(repo.root, "log", "-1", "--format=%s", "other") == "agent's own commit"  # 'other' did not move
    assert not wt.has_changes()


def test_commit_on_branch_from_a_detached_head_and_from_a_diverged_branch(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    wt.commit_all("T0: first", AGENT)
    git(wt.path, "checkout", "-q", "--detach")
    (wt.path / "a.txt").write_text("a\n")
    first = wt.commit_on_branch("swarm/e/a1", "T1: detached", AGENT)
    assert "a detached HEAD" in first.notes[0]
    assert wt.branch() == "swarm/e/a1"
    # Back on main (which lacks T0 and T1): the agent's work there is merged, main itself does not move.
    main_before = git(repo.root, "rev-parse", "main")
    git(wt.path, "checkout", "-q", "-f", "--detach", "main")
    (wt.path / "b.txt").write_text("b\n")
    second = wt.commit_on_branch("swarm/e/a1", "T2: diverged", AGENT)
    assert "diverged" in second.notes[0]
    assert "merged" in second.notes[0]
    assert wt.branch() == "swarm/e/a1"
    assert git(repo.root, "rev-parse", "main") == main_before
    files = git(repo.root, "ls-tree", "--name-only", "swarm/e/a1").split()
    assert {"a.txt", "b.txt"} <= set(files)
    assert git(repo.root, "log", "-1", "--format=%s", "swarm/e/a1") == "T2: diverged"


def test_commit_on_branch_without_changes_on_the_branch_returns_none(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    assert wt.commit_on_branch("swarm/e/a1", "WIP", AGENT, allow_empty=False).sha is None


def test_commit_on_branch_removes_a_stale_index_lock_first(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    (Path(git(wt.path, "rev-parse", "--absolute-git-dir")) / "index.lock").write_text("")
    (wt.path / "x.txt").write_text("x\n")
    result = wt.commit_on_branch("swarm/e/a1", "T1: x", AGENT)
    assert "stale" in result.notes[0]
    assert git(repo.root, "show", f"{result.sha}:x.txt") == "x"


def test_keep_ref_keeps_a_commit_the_branch_lost(repo: GitRepo) -> None:
    wt = add_agent(repo, "a1")
    sha = wt.commit_all("T1: one", AGENT)
    assert sha
    wt.keep_ref("refs/swarm/tasks/T1", sha)
    git(wt.path, "reset", "-q", "--hard", "HEAD~1")
    assert git(repo.root, "rev-parse", "refs/swarm/tasks/T1") == sha


def test_init_submodules_checks_them_out_in_a_new_worktree(repo: GitRepo, with_submodule: Path) -> None:
    wt = add_agent(repo, "a1")
    assert wt.uninitialised_submodules() == ["sub"]
    assert repo.init_submodules(wt.path)
    assert (wt.path / "sub" / "lib.txt").read_text() == "one\n"
    assert wt.uninitialised_submodules() == []


def test_uncommitted_paths_look_inside_submodules(repo: GitRepo, with_submodule: Path) -> None:
    wt = add_agent(repo, "a1")
    repo.init_submodules(wt.path)
    assert wt.uncommitted_paths() == []
    (wt.path / "sub" / "lib.txt").write_text("two\n")
    (wt.path / "sub" / "new.txt").write_text("new\n")
    (wt.path / "top.txt").write_text("top\n")
    assert sorted(wt.uncommitted_paths()) == ["sub/lib.txt", "sub/new.txt", "top.txt"]
    assert sorted(wt.uncommitted_paths(include_submodules=False)) == ["sub", "top.txt"]


def test_commit_on_branch_commits_inside_the_submodule_and_keeps_its_commit(
    repo: GitRepo, with_submodule: Path
) -> None:
    wt = add_agent(repo, "a1")
    repo.init_submodules(wt.path)
    (wt.path / "sub" / "lib.txt").write_text("two\n")
    result = wt.commit_on_branch("swarm/e/a1", "T1: edit the lib", AGENT)
    sub_sha = git(wt.path / "sub", "rev-parse", "HEAD")
    assert result.notes == [
        f"committed the changes in submodule sub as {sub_sha[:12]} (kept at refs/swarm/submodules/{sub_sha})"
    ]
    assert git(wt.path / "sub", "log", "-1", "--format=%s|%an") == "T1: edit the lib|swarm agent-1"
    assert git(repo.root, "rev-parse", f"{result.sha}:sub") == sub_sha  # the pointer is in the task commit
    assert wt.uncommitted_paths() == []
    repo.remove_worktree(wt.path, force=True)  # the worktree's copy of the submodule goes with it ...
    assert git(repo.root, "show", f"refs/swarm/submodules/{sub_sha}:lib.txt") == "two"  # ... its commit stays


def test_a_submodule_commit_that_fails_names_the_submodule(repo: GitRepo, with_submodule: Path) -> None:
    wt = add_agent(repo, "a1")
    repo.init_submodules(wt.path)
    (wt.path / "sub" / "lib.txt").write_text("two\n")
    git(wt.path / "sub", "config", "commit.gpgsign", "true")
    git(wt.path / "sub", "config", "gpg.program", "false")
    with pytest.raises(SwarmError, match="cannot commit the changes in submodule sub of"):
        wt.commit_on_branch("swarm/e/a1", "T1: edit", AGENT)
    assert wt.uncommitted_paths() == ["sub/lib.txt"]


def test_stash_saves_a_dirty_submodule_and_leaves_the_worktree_clean(repo: GitRepo, with_submodule: Path) -> None:
    wt = add_agent(repo, "a1")
    repo.init_submodules(wt.path)
    (wt.path / "sub" / "lib.txt").write_text("dirty\n")
    stash = wt.stash("swarm: T1 attempt 1 (exit 1)")
    assert stash
    assert wt.uncommitted_paths() == []
    assert not wt.has_changes()
    assert (wt.path / "sub" / "lib.txt").read_text() == "one\n"
    kept = git(repo.root, "rev-parse", f"{stash}:sub")  # the stash records the submodule commit ...
    assert git(repo.root, "show", f"refs/swarm/submodules/{kept}:lib.txt") == "dirty"  # ... which is kept

"""User documentation reads as documentation: no lab-notebook words, no broken links, a short README.

The user pages (README.md, docs/**/*.md outside docs/experiments/, models/*.md) and the generated
reports under docs/eval/ must not speak of sessions, stages, rounds, issues or tickets (the
history of experiments lives in docs/experiments/), and every relative Markdown link in README.md,
docs/*.md and models/*.md must name a file or folder that exists.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Whole words (and their plurals), any case, that belong to the experiments' history only.
HISTORY_WORDS = re.compile(r'\b(sessions?|stages?|rounds?|issues?|tickets?)\b', re.IGNORECASE)

#: Inline Markdown links and images: [text](target) / ![alt](target); the target ends at a space or ')'.
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')

README_MAX_LINES = 150


def user_pages() -> list[Path]:
    """README.md, docs/**/*.md except docs/experiments/, models/*.md (generated reports included)."""
    experiments = ROOT / 'docs' / 'experiments'
    docs = [p for p in sorted((ROOT / 'docs').rglob('*.md')) if experiments not in p.parents]
    return [ROOT / 'README.md', *docs, *sorted((ROOT / 'models').glob('*.md'))]


def linked_pages() -> list[Path]:
    """The pages whose relative links are checked: README.md, docs/*.md, models/*.md."""
    return [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md')), *sorted((ROOT / 'models').glob('*.md'))]


def history_words(text: str) -> list[tuple[int, str]]:
    """(line number, word) for every history word in ``text``."""
    return [(text.count('\n', 0, m.start()) + 1, m.group(0)) for m in HISTORY_WORDS.finditer(text)]


def relative_links(text: str) -> list[str]:
    """Link targets of ``text`` that are paths in the repository (no scheme, no pure anchor)."""
    out = []
    for target in LINK.findall(text):
        if re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', target) or target.startswith(('#', '/')):
            continue
        out.append(target.split('#', 1)[0])
    return [t for t in out if t]


def test_the_page_lists_are_not_empty():
    names = {p.relative_to(ROOT).as_posix() for p in user_pages()}
    assert {'README.md', 'docs/policy.md', 'models/MODEL_CARD.md', 'docs/eval/model/guidance.md'} <= names
    assert not any(n.startswith('docs/experiments/') for n in names)
    assert (ROOT / 'docs' / 'experiments').is_dir(), 'docs/experiments/ holds the history; it is missing'


@pytest.mark.parametrize('page', user_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_user_pages_carry_no_history_words(page: Path):
    found = history_words(page.read_text(encoding='utf-8'))
    assert not found, (f'{page.relative_to(ROOT)}: history words {found} (line, word); say what is true now, '
                       'and move the history to docs/experiments/')


@pytest.mark.parametrize('page', linked_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path):
    text = page.read_text(encoding='utf-8')
    missing = [t for t in relative_links(text) if not (page.parent / t).exists()]
    assert not missing, f'{page.relative_to(ROOT)}: links to missing files {missing}'


def test_readme_is_short():
    n = len((ROOT / 'README.md').read_text(encoding='utf-8').splitlines())
    assert n < README_MAX_LINES, f'README.md has {n} lines; expected fewer than {README_MAX_LINES}'


def test_readme_points_at_the_method_and_not_outside_the_repository():
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    assert 'docs/method.md' in relative_links(text)
    assert '..' + '/shared' not in text  # spelt in two: no file names the outside folder


def test_the_checks_catch_what_they_are_for():
    text = 'Intro.\nThe Stage-6 model (session 3) and two rounds;\nissue tracker; a staged file; sessionless.\n'
    assert [w.lower() for _, w in history_words(text)] == ['stage', 'session', 'rounds', 'issue']
    assert history_words(text)[0][0] == 2
    links = relative_links('[a](docs/x.md#part) ![b](img/p.png "t") [c](https://e.org) [d](#top) [e](<y z.md>)')
    assert links == ['docs/x.md', 'img/p.png']

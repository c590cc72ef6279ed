"""The repository stands alone: its method description is docs/method.md, and references resolve.

Every tracked text file (``git ls-files``; binary files skipped) must not point at a method
document outside the repository (a ``shared`` folder beside or above the checkout, or the
upper-case document name the code once cited), and every ``docs/method.md section N`` /
``docs/method.md sections N-M`` / ``docs/method.md §N`` reference must name a numbered section
(``## N. Title``) that docs/method.md has. The patterns below are spelt so that this file does
not match itself.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
METHOD_DOC = 'docs/method.md'

#: A reference to a method document outside the repository (the old upper-case name, or a
#: ``shared`` folder beside or above the checkout).
OUTSIDE = re.compile(r'\bMETH[O]D\b|(?:\.\./|/work/)shared\b')

_NUMS = r'\d+(?:\s*(?:-|–|,\s*and|,|and)\s*\d+)*'
#: ``docs/method.md section 6``, ``docs/method.md sections 3-4``, ``... sections 1, 5, 6``,
#: ``... sections 4 and 6``, ``docs/method.md §6``, ``docs/method.md §§3-4``.
REFERENCE = re.compile(r'docs/method\.md\s+(?:section\s+(?P<one>\d+)|sections\s+(?P<many>' + _NUMS + r')'
                       r'|§§?\s*(?P<sign>' + _NUMS + r'))')
#: Inside docs/method.md itself: ``(section 5)``, ``sections 3 and 4``.
INTERNAL = re.compile(r'\bsection\s+(?P<one>\d+)\b|\bsections\s+(?P<many>' + _NUMS + r')')
HEADING = re.compile(r'^## (\d+)\. \S', re.MULTILINE)

# Not walked when git cannot list the files (a source tree without .git).
_WALK_SKIP = {'.git', '.venv', 'build', 'install', 'log', '__pycache__', '.ruff_cache', '.hypothesis',
              '.pytest_cache', 'out', 'cache'}


def section_numbers(text: str) -> list[int]:
    """Section numbers of a reference's number list: ``'3-5'`` -> [3, 4, 5], ``'1, 5 and 6'`` -> [1, 5, 6]."""
    out: list[int] = []
    for part in re.split(r'\s*(?:,\s*and|,|and)\s*', text.strip()):
        bounds = [int(n) for n in re.split(r'\s*[-–]\s*', part) if n]
        if len(bounds) == 2 and bounds[0] <= bounds[1]:
            out.extend(range(bounds[0], bounds[1] + 1))
        else:
            out.extend(bounds)
    return out


def referenced_sections(text: str, pattern: re.Pattern[str] = REFERENCE) -> list[tuple[int, int, str]]:
    """``(line number, section, matched text)`` for every section a reference in ``text`` names."""
    found = []
    for m in pattern.finditer(text):
        line = text.count('\n', 0, m.start()) + 1
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        numbers = [int(groups['one'])] if 'one' in groups else section_numbers(groups.get('many') or groups['sign'])
        found.extend((line, n, ' '.join(m.group(0).split())) for n in numbers)
    return found


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(['git', '-C', str(ROOT), 'ls-files', '-z'], capture_output=True, check=True,
                             timeout=60).stdout
        return [p for p in out.decode('utf-8', 'surrogateescape').split('\0') if p]
    except (OSError, subprocess.SubprocessError):
        files = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = sorted(d for d in dirs if d not in _WALK_SKIP)
            files += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names]
        return sorted(files)


def _read_text(path: Path) -> str | None:
    """The file's text, or None for a binary (NUL byte in its first 8 KiB, or not UTF-8) or missing file."""
    try:
        with open(path, 'rb') as f:
            if b'\0' in f.read(8192):
                return None
        return path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError):
        return None


@pytest.fixture(scope='module')
def texts() -> dict[str, str]:
    out = {}
    for rel in _tracked_files():
        text = _read_text(ROOT / rel)
        if text is not None:
            out[rel] = text
    return out


@pytest.fixture(scope='module')
def sections() -> list[int]:
    return [int(n) for n in HEADING.findall((ROOT / METHOD_DOC).read_text(encoding='utf-8'))]


def test_section_numbers_parse_lists_and_ranges():
    assert section_numbers('6') == [6]
    assert section_numbers('3-5') == [3, 4, 5]
    assert section_numbers('1, 5, 6') == [1, 5, 6]
    assert section_numbers('4 and 6') == [4, 6]
    assert section_numbers('1, 2, and 7') == [1, 2, 7]
    doc = 'docs/method' + '.md'  # spelt in two so that this file's own references stay real ones
    refs = referenced_sections(f'a ({doc} sections 3-4)\nb {doc} section 12: x\n'
                               f'c {doc} §6 and {doc} §§1, 2\nd METHOD_DOC section 9')
    assert [(line, n) for line, n, _ in refs] == [(1, 3), (1, 4), (2, 12), (3, 6), (3, 1), (3, 2)]


def test_outside_pattern_catches_the_old_references_only():
    bad = ['(' + 'METH' + 'OD section 3)', 'METH' + 'OD.md', 'see ../' + 'shared/method/x', '/work/' + 'shared/x']
    good = ['METHOD_DOC', 'a method', 'shared memory', 'docs/method.md section 3']
    assert all(OUTSIDE.search(s) for s in bad)
    assert not any(OUTSIDE.search(s) for s in good)


def test_method_doc_has_its_numbered_sections(sections):
    assert len(sections) >= 7, f'{METHOD_DOC}: expected at least 7 "## N. Title" sections, found {sections}'
    assert sections == list(range(1, len(sections) + 1)), (
        f'{METHOD_DOC}: sections must be numbered 1, 2, 3, ... in order, found {sections}')


def test_the_files_are_read(texts):
    assert METHOD_DOC in texts and 'echoposed_ros/geometry/pose.py' in texts, (
        f'{METHOD_DOC} and the code must be among the tracked text files; read {len(texts)} files')


def test_no_reference_points_outside_the_repository(texts):
    hits = [f'{rel}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}'
            for rel, text in sorted(texts.items()) for m in OUTSIDE.finditer(text)]
    assert not hits, (f'{len(hits)} reference(s) to a method document outside the repository; '
                      f'point them at {METHOD_DOC} (section N) instead:\n' + '\n'.join(hits))


def test_every_method_reference_names_an_existing_section(texts, sections):
    refs = [(rel, line, n, what) for rel, text in sorted(texts.items()) for line, n, what in referenced_sections(text)]
    refs += [(METHOD_DOC, line, n, what) for line, n, what in referenced_sections(texts[METHOD_DOC], INTERNAL)]
    assert len({rel for rel, *_ in refs}) >= 20, (
        f'expected docs/method.md references in at least 20 files, found them in {sorted({r for r, *_ in refs})}')
    bad = [f'{rel}:{line}: {what!r} names section {n}' for rel, line, n, what in refs if n not in sections]
    assert not bad, f'references to sections {METHOD_DOC} does not have (it has {sections}):\n' + '\n'.join(bad)

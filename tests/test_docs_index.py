"""README.md's list of documentation names every page of docs/."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_lists_every_docs_page() -> None:
    section = (ROOT / "README.md").read_text().split("## Documentation", 1)[1].split("\n## ")[0]
    pages = sorted(path.name for path in (ROOT / "docs").glob("*.md"))
    missing = [page for page in pages if f"](docs/{page})" not in section]
    assert not missing, f"README.md's Documentation list lacks {missing}"

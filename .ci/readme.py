"""Render README.md from nbs/index.ipynb (nbdev-readme needs the Quarto binary, which this project
does not require). Markdown cells are copied; code cells not marked `#| hide` become python blocks.

    python .ci/readme.py          # write README.md
    python .ci/readme.py --check  # exit 1 if README.md is not what index.ipynb renders to
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def render(nb_path=root / 'nbs' / 'index.ipynb') -> str:
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    parts = []
    for cell in nb['cells']:
        src = ''.join(cell['source']).strip()
        if not src: continue
        if cell['cell_type'] == 'markdown': parts.append(src)
        elif cell['cell_type'] == 'code':
            lines = src.splitlines()
            directives = [l for l in lines if l.startswith('#|')]
            if any(d.replace(' ', '') in ('#|hide', '#|eval:false') or 'hide' in d for d in directives): continue
            body = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
            if body: parts.append(f'```python\n{body}\n```')
    note = '<!-- Generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file. -->'
    return note + '\n\n' + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, readme = render(), root / 'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text(encoding='utf-8') != text:
            sys.exit('README.md is out of step with nbs/index.ipynb: run `python .ci/readme.py` and commit.')
        print('README.md matches nbs/index.ipynb')
    else:
        readme.write_text(text, encoding='utf-8'); print(f'wrote {readme}')

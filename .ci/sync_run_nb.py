"""Copy nbs/run.ipynb into the package (fusion_nb/run.ipynb), so that an installed wheel's `fusion-nb run` has
the run notebook without the repository. nbs/run.ipynb is the source; the copy is byte-for-byte.

    python .ci/sync_run_nb.py          # copy nbs/run.ipynb -> fusion_nb/run.ipynb
    python .ci/sync_run_nb.py --check  # exit 1 if the copy differs from nbs/run.ipynb
"""
import shutil, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
source, copy = root / 'nbs' / 'run.ipynb', root / 'fusion_nb' / 'run.ipynb'

if __name__ == '__main__':
    if '--check' in sys.argv:
        if not copy.is_file() or copy.read_bytes() != source.read_bytes():
            sys.exit(f'{copy.relative_to(root)} is out of step with {source.relative_to(root)}: '
                     'run `python .ci/sync_run_nb.py` and commit.')
        print(f'{copy.relative_to(root)} matches {source.relative_to(root)}')
    else:
        shutil.copyfile(source, copy); print(f'copied {source.relative_to(root)} -> {copy.relative_to(root)}')

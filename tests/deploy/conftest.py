import sys
from pathlib import Path

# make the shared helper module importable without turning tests/ into a package
sys.path.insert(0, str(Path(__file__).parent))

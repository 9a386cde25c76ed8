"""The Hydra config tree of `rlgumbel-train`, shipped inside the package: found through the
package, so an installed rlgumbel runs from any folder."""

from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parent)

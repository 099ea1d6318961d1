"""varcall: germline short-variant calling from BAM files at any scale.

Data flows one way: regions -> engine per region -> partial results on disk -> merge ->
dataset/VCF -> concordance/report.
"""

from __future__ import annotations

__version__ = "0.1.0"

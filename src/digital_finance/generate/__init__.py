"""Synthetic input data for demos, tests and benchmarks, with its exact expected outcome."""

from digital_finance.generate.synthetic import MUTUAL_FUNDS, STOCKS, GenerateReport, generate

__all__ = ["MUTUAL_FUNDS", "STOCKS", "GenerateReport", "generate"]

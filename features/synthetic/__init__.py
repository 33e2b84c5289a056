"""Seeded, messy, realistic synthetic CRM data: `generate(config, out=...)` writes every raw source."""

from features.synthetic.generate import GenerationSummary, generate

__all__ = ["GenerationSummary", "generate"]

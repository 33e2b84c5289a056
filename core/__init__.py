"""The ground every layer stands on: errors, progress reporting, logging set-up (imports nothing of ours but configs)."""

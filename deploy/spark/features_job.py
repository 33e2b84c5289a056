"""The file spark-submit runs (a file, not `-m`): Persona's feature build on Spark, `features.spark_job`.

Kept outside the `features` package: spark-submit puts a script's folder first on sys.path, where
`features/profile.py` would shadow the standard library's `profile`.
"""

import sys

from features.spark_job import main

if __name__ == "__main__":
    sys.exit(main())

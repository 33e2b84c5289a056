"""The business dashboard (客户画像大屏): overview, model health and customer 360 pages, EN/ZH, served by
the scoring service at /dashboard. `app.Dashboard` is the ASGI app; the other modules read (`sources`),
compute (`overview`, `model_health`, `customer`) and render (`pages`, `charts`, templates)."""

"""What the tests share: a local HTTP mirror (`http_server`), the notebook's functions (`notebook`), and the
workers that some tests run in processes of their own (`*_worker`)."""

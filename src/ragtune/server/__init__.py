"""``ragtune serve``: the REST API over one project (:func:`ragtune.server.app.create_app`)."""

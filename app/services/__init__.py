"""Use cases over the models, a package per domain; every front door (console, portal, API,
CLI, actors) calls these. Cross-cutting: errors.py, scope.py, audit.py, actors.py.

Services never touch the Flask request, session, g, flash or url_for. They add and
flush; the outermost caller commits once, then messages are sent (platform/jobs.py,
after_commit).
"""

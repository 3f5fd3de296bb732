"""Use cases over the models; every front door (console, portal, API, CLI, actors) calls these.

Services never touch the Flask request, session, g, flash or url_for. They add and
flush; the outermost caller commits once, then messages are sent (see jobs.after_commit).
"""

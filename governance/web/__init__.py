"""The read-only risk page: search decisions, a decision's page with its replay, the serving
timeline and the drift views, served by the lineage store on its own port (``--web-port``).

``app`` builds the Starlette application (``routes`` the pages, ``access`` their
authentication, authorisation and access log, ``params`` the query parameters, ``views`` the
page queries, ``charts`` the inline SVG charts, ``templates/`` the Jinja2 pages); ``listener``
serves it with uvicorn on the store's event loop, over the store's TLS certificate.
"""

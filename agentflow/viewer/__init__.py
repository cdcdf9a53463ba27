"""The web viewer behind ``agentflow view``: runs, a run's graph and steps, comparisons and benchmark reports.

``create_app(store)`` is a read-only Starlette app over an open store; the pages are static files in ``static/``
(plain JavaScript, no build step, no node) that fetch its JSON.
"""

from agentflow.viewer._app import CSP, create_app
from agentflow.viewer._export import export_site
from agentflow.viewer._queries import RunsQuery, runs_page

__all__ = ["CSP", "RunsQuery", "create_app", "export_site", "runs_page"]

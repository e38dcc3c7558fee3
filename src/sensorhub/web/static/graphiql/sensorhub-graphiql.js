// The in-browser GraphQL IDE of sensorhub (GraphiQL, served from this server: no CDN).
// Logged into the web UI: queries run with the session (the CSRF token comes from the page).
// Otherwise: put your token in the Headers tab, e.g. {"Authorization": "Token shub_pat_..."}.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="sensorhub-csrf"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var headers = csrf ? { "X-CSRF-Token": csrf } : {};
  var wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";
  var fetcher = GraphiQL.createFetcher({ url: "/graphql", headers: headers, subscriptionUrl: wsUrl });
  var defaultQuery = [
    "# sensorhub speaks Datacake's GraphQL API (see docs/graphql.md).",
    csrf ? "# You are logged in: queries run with your session." :
      '# Add your token in the Headers tab: {"Authorization": "Token <your token>"}',
    "query {",
    "  allWorkspaces { id name }",
    "  devices(first: 10) {",
    "    edges { node { id verboseName currentMeasurements { field { fieldName } value time unit } } }",
    "    pageInfo { hasNextPage endCursor }",
    "  }",
    "}",
    ""
  ].join("\n");
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, { fetcher: fetcher, defaultQuery: defaultQuery }));
})();

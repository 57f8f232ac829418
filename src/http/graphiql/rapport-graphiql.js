// Starts GraphiQL on Rapport's /graphql page. The page's Content-Security-Policy allows no
// inline script, so this runs from its own file; what the server wants the page to know
// (the endpoint, the headers to start with) is in a JSON block it does not run.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("rapport-graphiql-config").textContent);
  // The demo's key also goes with every request itself: GraphiQL fetches the schema (for
  // the Docs and autocompletion) before the headers editor is read. Headers typed into the
  // editor win over it.
  var fetcher = GraphiQL.createFetcher({ url: config.endpoint, headers: config.key ? { Authorization: "Bearer " + config.key } : {} });
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultHeaders: config.headers,
      // The key lives in the headers editor only: not kept in the browser's storage.
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: "headers",
    })
  );
})();

// Package ui is dse's web console: the plain HTML, CSS and JavaScript
// (ES modules, no framework, no build step) under static/, embedded in the
// binary, and the http.Handler that serves them at /ui/ on every node's
// HTTP port.
//
// The console owns no data and no authority. Its files are served without
// a token; every figure it shows comes from the node's own HTTP API (and
// /metrics), requested by the page with the operator's token, so the API's
// role checks decide what it may read and do. The token lives in the
// browser's sessionStorage only.
//
// The page renders every value that comes from users (rows, service names,
// datasource configs) as text, never as markup, and every response of this
// handler carries a Content-Security-Policy that allows no inline script or
// style and no origin but the node's own: a value that slipped into markup
// would still not run.
package ui

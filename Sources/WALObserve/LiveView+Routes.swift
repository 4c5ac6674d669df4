// MARK: - HTTP routes

extension LiveView {
    /// The live page's routes for `ObserveServer`: `/` serves `LivePage.html`, `/api/live` serves `snapshotJSON()`
    /// (computed on the listener's worker thread under the view's lock: a merge of 60 seconds of histograms, no I/O).
    public var routes: [String: HTTPRoute] {
        [
            "/": { HTTPResponse(contentType: LivePage.contentType, body: LivePage.html) },
            "/api/live": { [self] in
                HTTPResponse(contentType: "application/json; charset=utf-8", body: snapshotJSON())
            },
        ]
    }
}

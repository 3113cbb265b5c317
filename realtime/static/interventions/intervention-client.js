/*
 * Storefront client for the intervention engine's WebSocket rooms.
 * Dependency-free; protocol: docs/websocket-protocol.md.
 *
 *   var client = new InterventionClient({
 *     url: "wss://engine.example/ws/user/<user_id>/",
 *     token: "<token from POST /api/v1/realtime/tokens, fetched by your backend>",
 *     getToken: function () { return fetch("/my/token").then(function (r) { return r.json(); })
 *                              .then(function (b) { return b.token; }); },   // optional
 *     onIntervention: function (payload, frame) {},                          // optional
 *     render: true                                                          // toast / modal
 *   });
 *   client.start();
 */
(function (root) {
  "use strict";

  // Close codes after which reconnecting with the same token cannot help.
  var FATAL = { 4400: "bad request", 4403: "forbidden", 4404: "unknown store" };
  var UNAUTHENTICATED = 4401;

  function compareIds(a, b) {
    var pa = String(a).split("-"), pb = String(b).split("-");
    var ma = Number(pa[0]), mb = Number(pb[0]);
    if (ma !== mb) { return ma < mb ? -1 : 1; }
    var sa = Number(pa[1] || 0), sb = Number(pb[1] || 0);
    return sa === sb ? 0 : (sa < sb ? -1 : 1);
  }

  function newId() {
    return Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
  }

  function InterventionClient(options) {
    this.url = options.url;
    this.token = options.token || "";
    this.getToken = options.getToken || null;
    this.onIntervention = options.onIntervention || function () {};
    this.onStatus = options.onStatus || function () {};
    this.shouldRender = options.render !== false;
    this.container = options.container || null;
    this.baseDelay = options.baseDelayMs || 500;
    this.maxDelay = options.maxDelayMs || 30000;
    this.storageKey = "ie-last-message:" + this.url;
    this.lastId = this._load();
    this.seen = {};
    this.attempt = 0;
    this.socket = null;
    this.heartbeatTimer = null;
    this.reconnectTimer = null;
    this.stopped = false;
  }

  InterventionClient.prototype._load = function () {
    try { return root.sessionStorage.getItem(this.storageKey) || ""; } catch (e) { return ""; }
  };

  InterventionClient.prototype._remember = function (messageId) {
    if (!/^\d+-\d+$/.test(messageId)) { return; }
    if (this.lastId && compareIds(messageId, this.lastId) <= 0) { return; }
    this.lastId = messageId;
    try { root.sessionStorage.setItem(this.storageKey, messageId); } catch (e) { /* private mode */ }
  };

  InterventionClient.prototype.start = function () {
    this.stopped = false;
    this._connect();
    return this;
  };

  InterventionClient.prototype.stop = function () {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.heartbeatTimer);
    if (this.socket) { this.socket.close(1000); }
  };

  InterventionClient.prototype._connect = function () {
    var self = this;
    var url = this.url + (this.url.indexOf("?") < 0 ? "?" : "&") +
      "token=" + encodeURIComponent(this.token);
    if (this.lastId) { url += "&last_message_id=" + encodeURIComponent(this.lastId); }
    var socket = new root.WebSocket(url);
    this.socket = socket;
    this.onStatus("connecting");
    socket.onmessage = function (event) { self._receive(event.data); };
    socket.onclose = function (event) { self._closed(event.code); };
  };

  InterventionClient.prototype._closed = function (code) {
    var self = this;
    clearInterval(this.heartbeatTimer);
    this.socket = null;
    this.onStatus("closed", code);
    if (this.stopped) { return; }
    if (FATAL[code]) {
      this.onStatus("refused", code, FATAL[code]);
      return;
    }
    if (code === UNAUTHENTICATED) {
      if (!this.getToken) { this.onStatus("refused", code, "token expired or invalid"); return; }
      Promise.resolve(this.getToken()).then(function (token) {
        self.token = token;
        self._scheduleReconnect();
      }, function () { self._scheduleReconnect(); });
      return;
    }
    this._scheduleReconnect();
  };

  InterventionClient.prototype._scheduleReconnect = function () {
    var self = this;
    // Exponential backoff with jitter, so a server restart is not met by every
    // storefront reconnecting in the same instant.
    var ceiling = Math.min(this.maxDelay, this.baseDelay * Math.pow(2, this.attempt));
    var delay = ceiling / 2 + Math.random() * ceiling / 2;
    this.attempt += 1;
    this.reconnectTimer = setTimeout(function () { self._connect(); }, delay);
  };

  InterventionClient.prototype._send = function (type, payload) {
    if (!this.socket || this.socket.readyState !== 1) { return false; }
    this.socket.send(JSON.stringify({
      type: type, payload: payload || {}, timestamp: new Date().toISOString(), messageId: newId()
    }));
    return true;
  };

  InterventionClient.prototype._receive = function (text) {
    var self = this;
    var frame;
    try { frame = JSON.parse(text); } catch (e) { return; }
    if (frame.type === "config") {
      this.attempt = 0;
      this.onStatus("connected", frame.payload);
      var seconds = Number(frame.payload.heartbeat_seconds) || 25;
      clearInterval(this.heartbeatTimer);
      this.heartbeatTimer = setInterval(function () { self._send("heartbeat", {}); }, seconds * 1000);
    } else if (frame.type === "intervention") {
      var payload = frame.payload || {};
      this._send("ack", { messageId: frame.messageId });
      this._remember(frame.messageId);
      if (this.seen[payload.id]) { return; }
      this.seen[payload.id] = true;
      this.onIntervention(payload, frame);
      if (this.shouldRender) { this.render(payload); }
    } else if (frame.type === "error") {
      if (root.console) { root.console.warn("intervention engine:", frame.payload); }
    }
  };

  InterventionClient.prototype.track = function (interventionId, event) {
    return this._send("tracking", { intervention_id: interventionId, event: event });
  };

  InterventionClient.prototype.render = function (payload) {
    var self = this;
    var doc = root.document;
    var content = payload.content || {};
    var modal = content.style === "modal";
    var box = doc.createElement("div");
    box.className = "ie-intervention " + (modal ? "ie-modal" : "ie-toast");
    box.setAttribute("role", modal ? "dialog" : "status");
    box.setAttribute("data-intervention-id", payload.id);
    box.style.cssText = modal
      ? "position:fixed;inset:0;display:flex;align-items:center;justify-content:center;" +
        "background:rgba(0,0,0,.45);z-index:2147483647;font-family:sans-serif"
      : "position:fixed;right:16px;bottom:16px;max-width:340px;z-index:2147483647;" +
        "font-family:sans-serif";
    var card = doc.createElement("div");
    card.style.cssText = "background:#fff;color:#222;border-radius:8px;padding:16px 18px;" +
      "box-shadow:0 6px 24px rgba(0,0,0,.25);max-width:340px";
    box.appendChild(card);

    function add(tag, text, css) {
      var el = doc.createElement(tag);
      el.textContent = text;   // never innerHTML: content is data, not markup
      if (css) { el.style.cssText = css; }
      card.appendChild(el);
      return el;
    }
    if (content.title) { add("strong", content.title, "display:block;margin-bottom:6px"); }
    if (content.body) { add("p", content.body, "margin:0 0 10px"); }
    if (content.discount_code) {
      var code = add("p", "Code: ", "margin:0 0 10px");
      var strong = doc.createElement("code");
      strong.className = "ie-discount-code";
      strong.textContent = content.discount_code;
      code.appendChild(strong);
    }
    var dismissed = false;
    function close(event) {
      if (!dismissed && event) { self.track(payload.id, event); }
      dismissed = true;
      if (box.parentNode) { box.parentNode.removeChild(box); }
    }
    var cta = add("button", content.cta || "View my cart",
      "background:#1a7f37;color:#fff;border:0;border-radius:4px;padding:8px 12px;cursor:pointer");
    cta.className = "ie-cta";
    cta.onclick = function () {
      self.track(payload.id, "clicked");
      close(null);
      var target = safeLink(content.cta_url);
      if (target) { root.location.href = target; }
    };
    var dismiss = add("button", "No thanks",
      "margin-left:8px;background:none;border:0;color:#555;cursor:pointer");
    dismiss.className = "ie-dismiss";
    dismiss.onclick = function () { close("dismissed"); };
    (this.container || doc.body).appendChild(box);
    this.track(payload.id, "displayed");
    return box;
  };

  // Only absolute http(s) links are followed: a javascript: or data: URL assigned to
  // location.href would run in the store's page. The server refuses them too; this
  // guards against a server that does not (docs/templates.md).
  function safeLink(value) {
    if (typeof value !== "string" || !value) { return null; }
    var url;
    try { url = new URL(value); } catch (error) { return null; }
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  }
  InterventionClient.safeLink = safeLink;

  root.InterventionClient = InterventionClient;
})(typeof window !== "undefined" ? window : this);

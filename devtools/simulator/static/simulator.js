// Tuma phone simulator: each handset talks to POST /ussd exactly as Africa's Talking relays a
// phone (sessionId, serviceCode, phoneNumber, networkCode, text = every input so far joined by
// "*"), and polls that number's SMS inbox from the local gateway through /simulator/messages.
// A phone can be switched to another USSD gateway's protocol (Hubtel, Arkesel, Nalo, Beem,
// MTN): it then posts that gateway's JSON to POST /ussd/<gateway> (the dialled string first,
// then one input at a time) and reads its answer, so the same menus show over that protocol.
// A phone can be switched to another country: it gets a number of that country (the same demo
// slot's ending) and that country's network code. The server runs one country; a phone of
// another dials in as a foreign number, and says so.
// A shortcut dialled (*384*7*1*0712000222*50#) goes as each gateway sends one.
// Plain script, no build step, no dependencies.
(function () {
  "use strict";
  var root = document.getElementById("phones");
  var SERVICE_CODE = root.dataset.serviceCode;
  var SERVER_COUNTRY = root.dataset.serverCountry;
  var COUNTRIES = {};
  JSON.parse(root.dataset.countries || "[]").forEach(function (c) { COUNTRIES[c.code] = c; });
  var USSD_URL = root.dataset.ussdUrl;
  var MESSAGES_URL = root.dataset.messagesUrl;
  var GATEWAY_URLS = JSON.parse(root.dataset.gatewayUrls || "{}");
  var POLL_MS = 1000;
  var template = document.getElementById("phone-template");

  function Phone(slot) {
    this.slot = slot;
    slot.appendChild(template.content.cloneNode(true));
    this.handset = slot.querySelector(".handset");
    this.numberInput = slot.querySelector(".phone-number");
    this.gatewaySelect = slot.querySelector(".gateway");
    this.countrySelect = slot.querySelector(".country");
    this.foreign = slot.querySelector(".foreign");
    this.display = slot.querySelector(".display");
    this.entry = slot.querySelector(".entry");
    this.list = slot.querySelector(".messages");
    this.count = slot.querySelector(".count");
    slot.querySelector(".who").textContent = slot.dataset.label || "";
    this.numberInput.value = slot.dataset.phone || "";
    this.seen = {};
    this.idle();
    var self = this;
    slot.querySelectorAll(".key").forEach(function (button) {
      button.addEventListener("click", function () { self.press(button.dataset.key); self.handset.focus(); });
    });
    this.handset.addEventListener("keydown", function (event) {
      if (event.target === self.numberInput) return;
      var key = event.key;
      // Letters too: registration asks for names, which a real handset types by multi-tap.
      if (/^[0-9A-Za-z*# '-]$/.test(key)) self.press(key);
      else if (key === "Enter") self.press("call");
      else if (key === "Backspace") self.press("clear");
      else if (key === "Escape") self.press("end");
      else return;
      event.preventDefault();
    });
    this.numberInput.addEventListener("change", function () {
      var number = self.numberInput.value.trim();
      slot.querySelector(".who").textContent = number === slot.dataset.phone ? slot.dataset.label || "" : "";
      self.press("end");
      self.list.innerHTML = "";
      self.seen = {};
      self.poll();
    });
    this.gatewaySelect.addEventListener("change", function () { self.press("end"); });
    this.countrySelect.addEventListener("change", function () { self.switchCountry(); });
    this.markForeign();
    this.poll();
    setInterval(function () { self.poll(); }, POLL_MS);
  }

  // Another country: a number of it, ending as this phone's did (the demo's people keep their
  // slot), and a warning when it is not the server's country.
  Phone.prototype.switchCountry = function () {
    var c = COUNTRIES[this.countrySelect.value];
    var digits = this.numberInput.value.replace(/\D/g, "");
    var ending = digits.length >= 2 ? digits.slice(-2) : "00";
    this.numberInput.value = c.example.slice(0, -2) + ending;
    this.numberInput.dispatchEvent(new Event("change"));
    this.markForeign();
  };

  Phone.prototype.markForeign = function () {
    var code = this.countrySelect.value;
    var server = COUNTRIES[SERVER_COUNTRY];
    this.foreign.hidden = code === SERVER_COUNTRY;
    this.foreign.textContent = code === SERVER_COUNTRY ? "" : "Foreign number: this server runs " +
      server.name + " (+" + server.calling_code + "). Run it with TUMA_COUNTRY=" + code + " for " +
      COUNTRIES[code].name + ".";
  };

  Phone.prototype.idle = function () {
    this.sessionId = null;
    this.inputs = [];
    this.typed = "";
    this.ended = false;
    this.display.textContent = "Tuma\n\nDial " + SERVICE_CODE + "\nthen press the green key.";
    this.entry.textContent = "";
  };

  Phone.prototype.press = function (key) {
    if (this.busy) return;
    if (key === "end") {
      if (this.sessionId !== null && !this.ended) this.hangUp();
      this.idle();
      return;
    }
    if (this.ended) { this.idle(); if (key !== "call") this.typeKey(key); return; }
    if (key === "clear") { this.typed = this.typed.slice(0, -1); this.entry.textContent = this.typed; return; }
    if (key === "call") {
      if (this.sessionId === null) this.dial();
      else this.answer();
      return;
    }
    this.typeKey(key);
  };

  Phone.prototype.typeKey = function (key) {
    if (this.typed.length < 182) this.typed += key;
    this.entry.textContent = this.typed;
  };

  Phone.prototype.dial = function () {
    var code = this.typed || SERVICE_CODE;
    // A shortcut: inputs after the service code, before its "#" (*384*7*1*0712000222*50#).
    var base = SERVICE_CODE.replace(/#$/, "") + "*";
    var shortcut = code.indexOf(base) === 0 && /#$/.test(code) ? code.slice(base.length, -1) : "";
    if (code !== SERVICE_CODE && !shortcut) {
      this.display.textContent = "Unknown service code " + code + ".\nDial " + SERVICE_CODE + ".";
      this.typed = "";
      this.entry.textContent = "";
      return;
    }
    this.sessionId = "SIM" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
    // Africa's Talking sends the shortcut's inputs as the first text, and keeps them in it.
    this.inputs = shortcut ? shortcut.split("*") : [];
    this.typed = "";
    this.entry.textContent = "";
    this.sequence = 0;
    this.gateway = this.gatewaySelect.value;
    if (this.gateway === "at") this.hop(shortcut);
    else this.gatewayHop("begin", code);
  };

  Phone.prototype.answer = function () {
    this.inputs.push(this.typed);
    this.typed = "";
    this.entry.textContent = "";
    if (this.gateway === "at") this.hop(this.inputs.join("*"));
    else this.gatewayHop("input", this.inputs[this.inputs.length - 1]);
  };

  // Another gateway's request: kind is begin (value: what was dialled), input or end.
  Phone.prototype.gatewayRequest = function (kind, value) {
    var number = this.numberInput.value.trim().replace(/^\+/, "");
    var session = this.sessionId;
    switch (this.gateway) {
    case "hubtel":
      this.sequence += 1;
      return { Type: { begin: "Initiation", input: "Response", end: "Release" }[kind], Mobile: number,
        SessionId: session, ServiceCode: SERVICE_CODE, Message: value, Operator: "simulator",
        Sequence: this.sequence, ClientState: "" };
    case "arkesel":
      return { sessionID: session, userID: "SIMULATOR", newSession: kind === "begin", msisdn: number,
        userData: value, network: "simulator" };
    case "nalo":
      return { USERID: "SIMULATOR", MSISDN: number, USERDATA: value, MSGTYPE: kind === "begin", NETWORK: "simulator" };
    case "beem":
      return { command: { begin: "initiate", input: "continue", end: "terminate" }[kind], msisdn: number,
        session_id: session, operator: "simulator", payload: { request_id: this.sequence, response: value } };
    default: // mtn
      return { sessionId: session, messageType: { begin: "0", input: "1", end: "2" }[kind], msisdn: number,
        serviceCode: SERVICE_CODE, ussdString: value };
    }
  };

  // Another gateway's answer as "CON ..." or "END ...".
  Phone.prototype.gatewayReply = function (a) {
    var more, text;
    switch (this.gateway) {
    case "hubtel": more = a.Type === "Response"; text = a.Message; break;
    case "arkesel": more = a.continueSession; text = a.message; break;
    case "nalo": more = a.MSGTYPE; text = a.MSG; break;
    case "beem": more = a.command === "continue"; text = a.payload.request; this.sequence = a.payload.request_id; break;
    default: more = a.data.userInputRequired; text = a.data.inboundResponse;
    }
    return (more ? "CON " : "END ") + text;
  };

  Phone.prototype.gatewayHop = function (kind, value) {
    var self = this;
    this.busy = true;
    this.handset.classList.add("busy");
    fetch(GATEWAY_URLS[this.gateway], {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(this.gatewayRequest(kind, value))
    })
      .then(function (response) { return response.json(); })
      .then(function (answer) { self.show(self.gatewayReply(answer)); })
      .catch(function () { self.show("END Network error: the service did not answer."); })
      .finally(function () { self.busy = false; self.handset.classList.remove("busy"); });
  };

  // Hanging up mid-session: a gateway that sends end notices is told (Arkesel and Nalo send none).
  Phone.prototype.hangUp = function () {
    if (["hubtel", "beem", "mtn"].indexOf(this.gateway) < 0) return;
    fetch(GATEWAY_URLS[this.gateway], {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(this.gatewayRequest("end", ""))
    }).catch(function () { /* the session times out on its own */ });
  };

  Phone.prototype.hop = function (text) {
    var self = this;
    var body = new URLSearchParams({
      sessionId: this.sessionId,
      serviceCode: SERVICE_CODE,
      phoneNumber: this.numberInput.value.trim(),
      networkCode: COUNTRIES[this.countrySelect.value].network_code,
      text: text
    });
    this.busy = true;
    this.handset.classList.add("busy");
    fetch(USSD_URL, { method: "POST", body: body })
      .then(function (response) { return response.text(); })
      .then(function (reply) { self.show(reply); })
      .catch(function () { self.show("END Network error: the service did not answer."); })
      .finally(function () { self.busy = false; self.handset.classList.remove("busy"); });
  };

  Phone.prototype.show = function (reply) {
    var ends = reply.indexOf("END") === 0;
    this.display.textContent = reply.replace(/^(CON|END) ?/, "");
    if (ends) {
      this.ended = true;
      this.display.textContent += "\n\n[session ended]";
    }
  };

  Phone.prototype.poll = function () {
    var self = this;
    var number = this.numberInput.value.trim();
    if (!number) return;
    fetch(MESSAGES_URL + "?phone=" + encodeURIComponent(number))
      .then(function (response) { return response.json(); })
      .then(function (data) { self.render(data.messages || []); })
      .catch(function () { /* the next poll tries again */ });
  };

  Phone.prototype.render = function (messages) {
    var self = this;
    this.count.textContent = "(" + messages.length + ")";
    messages.forEach(function (m) {
      if (self.seen[m.id]) return;
      self.seen[m.id] = true;
      var item = document.createElement("li");
      var when = document.createElement("time");
      when.textContent = (m.from || "") + " · " + (m.at || "");
      item.appendChild(when);
      item.appendChild(document.createTextNode(m.text || ""));
      item.className = "new";
      setTimeout(function () { item.className = ""; }, 4000);
      self.list.insertBefore(item, self.list.firstChild);
    });
  };

  document.querySelectorAll(".phone-slot").forEach(function (slot) { new Phone(slot); });

  // The demo merchant's system: the webhook events the local receiver got, newest first.
  var pane = document.getElementById("merchant-events");
  if (pane) {
    var list = pane.querySelector(".events");
    var count = pane.querySelector(".count");
    var pollEvents = function () {
      fetch(pane.dataset.eventsUrl)
        .then(function (response) { return response.json(); })
        .then(function (data) {
          var events = data.events || [];
          count.textContent = "(" + events.length + ")";
          list.textContent = "";
          events.forEach(function (e) {
            var item = document.createElement("li");
            var d = e.data || {};
            var who = d.payer || d.recipient || {};
            item.textContent = (e.at || "") + "  " + e.type + "  " + (d.transaction || d.payment_request || "") +
              "  " + (e.amount_text || "") +
              "  " + (who.name || "") + " " + (who.phone || "") + (d.reference ? "  ref " + d.reference : "") +
              "  " + (e.verified ? "signature ok" : "SIGNATURE NOT VERIFIED") + "  " + e.id;
            list.appendChild(item);
          });
        })
        .catch(function () { /* the next poll tries again */ });
    };
    pollEvents();
    setInterval(pollEvents, POLL_MS);
  }
  document.getElementById("add-phone").addEventListener("click", function () {
    var slot = document.createElement("section");
    slot.className = "phone-slot";
    slot.dataset.label = "another phone";
    root.appendChild(slot);
    new Phone(slot).numberInput.focus();
  });
})();

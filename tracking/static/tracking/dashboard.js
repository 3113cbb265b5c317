/* The admin dashboard's charts (docs/analytics.md, "Dashboard").
 *
 * Reads the figures the server embedded with json_script (#dashboard-figures) and draws
 * them with the vendored Chart.js; nothing here comes from a template. The live
 * connections chart polls admin/dashboard/live every 10 s while the page is open.
 * When every chart is drawn, <body data-dashboard="ready"> (the browser test waits for it).
 */
(function () {
  "use strict";

  var source = document.getElementById("dashboard-figures");
  var section = document.getElementById("dashboard");
  if (!source || !section || !window.Chart) {
    return;
  }
  var figures = JSON.parse(source.textContent);
  var COLORS = ["#417690", "#e6a23c", "#5aa469", "#c75450", "#8e6fb8", "#3aa6b9", "#a0785a"];
  var LIVE_POINTS = 60;
  var LIVE_EVERY_MS = 10000;

  Chart.defaults.animation = false; // redraws on every refresh; nothing to watch
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.color = getComputedStyle(document.body).getPropertyValue("--body-quiet-color") || "#666";
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;

  function color(index) {
    return COLORS[index % COLORS.length];
  }

  function draw(id, config) {
    return new Chart(document.getElementById(id), config);
  }

  function label(text) {
    return String(text || "").replace(/_/g, " ");
  }

  function percent(rate) {
    return rate === null || rate === undefined ? null : Math.round(rate * 1000) / 10;
  }

  // Recovered revenue per currency (bars, never summed across currencies), orders (line).
  var revenue = figures.revenue;
  var revenueSets = Object.keys(revenue.currencies).map(function (currency, index) {
    return {
      type: "bar",
      label: "Recovered " + currency,
      data: revenue.currencies[currency].map(Number),
      backgroundColor: color(index),
      yAxisID: "revenue",
    };
  });
  revenueSets.push({
    type: "line",
    label: "Attributed orders",
    data: revenue.converted,
    borderColor: color(3),
    backgroundColor: color(3),
    tension: 0.3,
    yAxisID: "orders",
  });
  draw("chart-revenue", {
    data: { labels: revenue.days, datasets: revenueSets },
    options: {
      interaction: { mode: "index", intersect: false },
      scales: {
        revenue: { position: "left", beginAtZero: true, title: { display: true, text: "revenue" } },
        orders: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "orders" } },
      },
    },
  });

  // The funnel: one bar per step, widest first.
  draw("chart-funnel", {
    type: "bar",
    data: {
      labels: figures.funnel.map(function (step) { return label(step.step); }),
      datasets: [{
        label: "Count",
        data: figures.funnel.map(function (step) { return step.count; }),
        backgroundColor: figures.funnel.map(function (step, index) { return step.step === "suppressed" ? color(3) : color(0); }),
      }],
    },
    options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } },
  });

  // Channels side by side: rates over sends, in percent.
  var rates = [["delivery_rate", "Delivered"], ["open_rate", "Opened"], ["click_rate", "Clicked"], ["conversion_rate", "Ordered"]];
  draw("chart-channels", {
    type: "bar",
    data: {
      labels: figures.channels.map(function (row) { return row.channel + " (" + row.sent + " sent)"; }),
      datasets: rates.map(function (rate, index) {
        return {
          label: rate[1] + " %",
          data: figures.channels.map(function (row) { return percent(row[rate[0]]); }),
          backgroundColor: color(index),
        };
      }),
    },
    options: { scales: { y: { beginAtZero: true, max: 100 } } },
  });

  // Top campaigns by attributed orders, with their sends.
  draw("chart-campaigns", {
    type: "bar",
    data: {
      labels: figures.campaigns.map(function (row) { return row.name; }),
      datasets: [
        { label: "Attributed orders", data: figures.campaigns.map(function (row) { return row.converted; }), backgroundColor: color(2) },
        { label: "Clicked", data: figures.campaigns.map(function (row) { return row.clicked; }), backgroundColor: color(1) },
      ],
    },
    options: { indexAxis: "y", scales: { x: { beginAtZero: true } } },
  });

  // Failures by reason code, stacked by kind (permanent, transient, reported after send).
  var failures = figures.health.failures;
  var kinds = [];
  failures.forEach(function (row) {
    Object.keys(row.kinds).forEach(function (kind) {
      if (kinds.indexOf(kind) < 0) { kinds.push(kind); }
    });
  });
  draw("chart-failures", {
    type: "bar",
    data: {
      labels: failures.map(function (row) { return label(row.reason); }),
      datasets: kinds.map(function (kind, index) {
        return {
          label: kind,
          data: failures.map(function (row) { return row.kinds[kind] || 0; }),
          backgroundColor: [color(3), color(1), color(4), color(5)][index % 4],
        };
      }),
    },
    options: { indexAxis: "y", scales: { x: { stacked: true, beginAtZero: true }, y: { stacked: true } } },
  });

  // New suppressions by reason, stacked by channel.
  var suppressions = figures.health.suppressions;
  var reasons = [];
  var channels = [];
  suppressions.forEach(function (row) {
    if (reasons.indexOf(row.reason) < 0) { reasons.push(row.reason); }
    if (channels.indexOf(row.channel) < 0) { channels.push(row.channel); }
  });
  draw("chart-suppressions", {
    type: "bar",
    data: {
      labels: reasons.map(label),
      datasets: channels.map(function (channel, index) {
        return {
          label: channel,
          data: reasons.map(function (reason) {
            var found = suppressions.filter(function (row) { return row.reason === reason && row.channel === channel; });
            return found.length ? found[0].count : 0;
          }),
          backgroundColor: color(index + 4),
        };
      }),
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
  });

  // Live connections: a point per refresh, by scope (store rooms, shoppers' own).
  var live = draw("chart-live", {
    type: "line",
    data: { labels: [], datasets: [] },
    options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
  var liveStatus = document.getElementById("live-status");
  var liveTile = document.querySelector("[data-tile=live] .dashboard-tile-value");

  function addLivePoint(snapshot) {
    if (!snapshot) {
      liveStatus.textContent = "registry unavailable";
      return;
    }
    liveStatus.textContent = "refreshed every 10 s";
    if (liveTile) { liveTile.textContent = snapshot.total; }
    var series = Object.assign({ total: snapshot.total }, snapshot.scopes);
    live.data.labels.push(new Date(snapshot.at).toLocaleTimeString());
    Object.keys(series).forEach(function (name) {
      var dataset = live.data.datasets.find(function (set) { return set.label === name; });
      if (!dataset) {
        var index = live.data.datasets.length;
        dataset = { label: name, data: live.data.labels.slice(1).map(function () { return 0; }), borderColor: color(index), backgroundColor: color(index), tension: 0.2 };
        live.data.datasets.push(dataset);
      }
    });
    live.data.datasets.forEach(function (dataset) { dataset.data.push(series[dataset.label] || 0); });
    if (live.data.labels.length > LIVE_POINTS) {
      live.data.labels.shift();
      live.data.datasets.forEach(function (dataset) { dataset.data.shift(); });
    }
    live.update();
  }

  addLivePoint(figures.live);
  window.setInterval(function () {
    fetch(section.dataset.liveUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { live: null }; })
      .then(function (body) { addLivePoint(body.live); })
      .catch(function () { addLivePoint(null); });
  }, LIVE_EVERY_MS);

  document.body.dataset.dashboard = "ready";
})();

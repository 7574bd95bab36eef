// The admin's list of live stream sessions reloads itself (admin.py, changelist_view),
// every data-refresh-seconds, while no row is selected and the tab is visible: a
// reload would lose a selection made for an action.
(function () {
  const script = document.currentScript;
  const seconds = Number(script && script.dataset.refreshSeconds) || 5;
  function selected() {
    return document.querySelector("#result_list input.action-select:checked, #action-toggle:checked") !== null;
  }
  setInterval(function () {
    if (document.visibilityState === "visible" && !selected()) window.location.reload();
  }, seconds * 1000);
})();

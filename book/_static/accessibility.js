/* Accessibility fixes to the theme's markup, found by the axe-core audit of
 * tests/browser; each is explained where it is made. */
function untitleIcons() {
  for (const icon of document.querySelectorAll(".theme-switch-button .theme-switch")) {
    icon.removeAttribute("title");
    icon.removeAttribute("aria-labelledby");
    icon.setAttribute("aria-hidden", "true");
    for (const title of icon.querySelectorAll("title")) title.remove();
  }
}
window.addEventListener("load", untitleIcons);

document.addEventListener("DOMContentLoaded", () => {
  // The search field shows "Search Ctrl+K" but is named "Search": a speech-input
  // user who says what is shown must be able to reach it (WCAG 2.5.3).
  for (const button of document.querySelectorAll(".search-button-field")) {
    button.setAttribute("aria-label", button.textContent.replace(/\s+/g, " ").trim());
  }
  // The colour-mode button's three icons carry titles (Light, Dark, System
  // Settings) that become its visible text but not its name "Color mode": the
  // icons are decoration, the name says what the button does. Font Awesome turns
  // each <i title> into an <svg> with a <title>, before or after this runs.
  untitleIcons();
  // The bibliography is a role="list" whose entries have the deprecated role
  // doc-biblioentry, which a list may not contain: make them list items.
  for (const entry of document.querySelectorAll('[role="list"] > [role="doc-biblioentry"]')) {
    entry.setAttribute("role", "listitem");
  }
});

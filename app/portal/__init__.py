"""The end-user enrollment portal: one blueprint per flow, its own base template
(templates/portal/base.html), no console chrome. End users never see the console."""

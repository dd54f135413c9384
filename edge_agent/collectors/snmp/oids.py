"""The OIDs the SNMP printer collector reads: SNMPv2-MIB, HOST-RESOURCES-MIB, Printer-MIB."""

from __future__ import annotations

# SNMPv2-MIB system group: scalars, instance .0.
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"  # TimeTicks, 1/100 s, wraps at 2**32
SYS_NAME = "1.3.6.1.2.1.1.5.0"
IDENTITY = (SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME)

# HOST-RESOURCES-MIB hrDeviceTable and hrPrinterTable, indexed by hrDeviceIndex.
HR_DEVICE_DESCR = "1.3.6.1.2.1.25.3.2.1.3"
HR_DEVICE_STATUS = "1.3.6.1.2.1.25.3.2.1.5"
HR_PRINTER_TABLE = "1.3.6.1.2.1.25.3.5.1"
HR_PRINTER_STATUS = "1.3.6.1.2.1.25.3.5.1.1"
HR_PRINTER_ERROR_STATE = "1.3.6.1.2.1.25.3.5.1.2"

# Printer-MIB (RFC 3805): rows are indexed <hrDeviceIndex>.<n>.
PRINTER_MIB = "1.3.6.1.2.1.43"
PRT_GENERAL_SERIAL = "1.3.6.1.2.1.43.5.1.1.17"
PRT_COVER_DESCR = "1.3.6.1.2.1.43.6.1.1.2"
PRT_COVER_STATUS = "1.3.6.1.2.1.43.6.1.1.3"
PRT_INPUT_TYPE = "1.3.6.1.2.1.43.8.2.1.2"
PRT_INPUT_MAX_CAPACITY = "1.3.6.1.2.1.43.8.2.1.9"
PRT_INPUT_CURRENT_LEVEL = "1.3.6.1.2.1.43.8.2.1.10"
PRT_INPUT_STATUS = "1.3.6.1.2.1.43.8.2.1.11"
PRT_INPUT_MEDIA_NAME = "1.3.6.1.2.1.43.8.2.1.12"
PRT_INPUT_NAME = "1.3.6.1.2.1.43.8.2.1.13"
PRT_INPUT_DESCRIPTION = "1.3.6.1.2.1.43.8.2.1.18"
PRT_MARKER_LIFE_COUNT = "1.3.6.1.2.1.43.10.2.1.4"
PRT_SUPPLY_CLASS = "1.3.6.1.2.1.43.11.1.1.4"
PRT_SUPPLY_TYPE = "1.3.6.1.2.1.43.11.1.1.5"
PRT_SUPPLY_DESCRIPTION = "1.3.6.1.2.1.43.11.1.1.6"
PRT_SUPPLY_UNIT = "1.3.6.1.2.1.43.11.1.1.7"
PRT_SUPPLY_MAX_CAPACITY = "1.3.6.1.2.1.43.11.1.1.8"
PRT_SUPPLY_LEVEL = "1.3.6.1.2.1.43.11.1.1.9"
PRT_ALERT_TABLE = "1.3.6.1.2.1.43.18.1.1"
PRT_ALERT_SEVERITY = "1.3.6.1.2.1.43.18.1.1.2"
PRT_ALERT_GROUP = "1.3.6.1.2.1.43.18.1.1.4"
PRT_ALERT_CODE = "1.3.6.1.2.1.43.18.1.1.7"
PRT_ALERT_DESCRIPTION = "1.3.6.1.2.1.43.18.1.1.8"

# hrDeviceStatus: 1 unknown, 2 running, 3 warning, 4 testing, 5 down.
HR_DEVICE_STATUS_NAMES = {1: "unknown", 2: "running", 3: "warning", 4: "testing", 5: "down"}
# hrPrinterStatus: 1 other, 2 unknown, 3 idle, 4 printing, 5 warmup.
HR_PRINTER_STATUS_NAMES = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}

# hrPrinterDetectedErrorState: bit 0 is the MSB (0x80) of the first octet.
ERROR_BITS = (
    "lowPaper", "noPaper", "lowToner", "noToner", "doorOpen", "jammed", "offline",
    "serviceRequested", "inputTrayMissing", "outputTrayMissing", "markerSupplyMissing",
    "outputNearFull", "outputFull", "inputTrayEmpty", "overduePreventMaint",
)

# prtMarkerSuppliesClass (PrtMarkerSuppliesClassTC).
SUPPLY_CLASSES = {1: "other", 3: "consumed", 4: "receptacle"}
# prtMarkerSuppliesType (IANA-PRINTER-MIB PrtMarkerSuppliesTypeTC).
SUPPLY_TYPES = {
    1: "other", 2: "unknown", 3: "toner", 4: "wasteToner", 5: "ink", 6: "inkCartridge",
    7: "inkRibbon", 8: "wasteInk", 9: "opc", 10: "developer", 11: "fuserOil", 12: "solidWax",
    13: "ribbonWax", 14: "wasteWax", 15: "fuser", 16: "coronaWire", 17: "fuserOilWick",
    18: "cleanerUnit", 19: "fuserCleaningPad", 20: "transferUnit", 21: "tonerCartridge",
    22: "fuserOiler", 23: "water", 24: "wasteWater", 25: "glueWaterAdditive", 26: "wastePaper",
    27: "bindingSupply", 28: "bandingSupply", 29: "stitchingWire", 30: "shrinkWrap",
    31: "paperWrap", 32: "staples", 33: "inserts", 34: "covers", 35: "matteToner", 36: "matteInk",
}
# Special values of capacities and levels (Printer-MIB): -1 other/unrestricted, -2 unknown,
# -3 "at least one unit remains" (levels only).
UNRESTRICTED, UNKNOWN, SOME_REMAINING = -1, -2, -3

# prtCoverStatus (PrtCoverStatusTC): 3 open, 4 closed, 5 interlockOpen, 6 interlockClosed.
COVER_OPEN = (3, 5)
COVER_CLOSED = (4, 6)

# prtAlertSeverityLevel (PrtAlertSeverityLevelTC).
ALERT_SEVERITIES = {1: "other", 3: "critical", 4: "warning", 5: "warningBinaryChangeEvent"}
# prtAlertCode (IANA-PRINTER-MIB PrtAlertCodeTC), the codes a store cares about.
ALERT_CODES = {
    1: "other", 2: "unknown", 3: "coverOpen", 4: "coverClosed", 5: "interlockOpen",
    6: "interlockClosed", 7: "configurationChange", 8: "jam", 9: "subunitMissing",
    10: "subunitLifeAlmostOver", 11: "subunitLifeOver", 12: "subunitAlmostEmpty",
    13: "subunitEmpty", 14: "subunitAlmostFull", 15: "subunitFull", 16: "subunitNearLimit",
    17: "subunitAtLimit", 18: "subunitOpened", 19: "subunitClosed", 20: "subunitTurnedOn",
    21: "subunitTurnedOff", 22: "subunitOffline", 23: "subunitPowerSaver",
    24: "subunitWarmingUp", 25: "subunitAdded", 26: "subunitRemoved",
    27: "subunitResourceAdded", 28: "subunitResourceRemoved", 29: "subunitRecoverableFailure",
    30: "subunitUnrecoverableFailure", 31: "subunitRecoverableStorageError",
    32: "subunitUnrecoverableStorageError", 33: "subunitMotorFailure",
    34: "subunitMemoryExhausted", 35: "subunitUnderTemperature", 36: "subunitOverTemperature",
    37: "subunitTimingFailure", 38: "subunitThermistorFailure",
    501: "doorOpen", 502: "doorClosed", 503: "powerUp", 504: "powerDown",
    505: "printerNMSReset", 506: "printerManualReset", 507: "printerReadyToPrint",
    801: "inputMediaTrayMissing", 802: "inputMediaSizeChange", 803: "inputMediaWeightChange",
    804: "inputMediaTypeChange", 805: "inputMediaColorChange", 806: "inputMediaFormPartsChange",
    807: "inputMediaSupplyLow", 808: "inputMediaSupplyEmpty", 809: "inputMediaChangeRequest",
    810: "inputManualInputRequest", 811: "inputTrayPositionFailure",
    812: "inputTrayElevationFailure",
    813: "inputCannotFeedSizeSelected",
    901: "outputMediaTrayMissing", 902: "outputMediaTrayAlmostFull", 903: "outputMediaTrayFull",
    904: "outputMailboxSelectFailure",
    1001: "markerFuserUnderTemperature", 1002: "markerFuserOverTemperature",
    1003: "markerFuserTimingFailure", 1004: "markerFuserThermistorFailure",
    1005: "markerAdjustingPrintQuality",
    1101: "markerTonerEmpty", 1102: "markerInkEmpty", 1103: "markerPrintRibbonEmpty",
    1104: "markerTonerAlmostEmpty", 1105: "markerInkAlmostEmpty",
    1106: "markerPrintRibbonAlmostEmpty", 1107: "markerWasteTonerReceptacleAlmostFull",
    1108: "markerWasteInkReceptacleAlmostFull", 1109: "markerWasteTonerReceptacleFull",
    1110: "markerWasteInkReceptacleFull", 1111: "markerOpcLifeAlmostOver",
    1112: "markerOpcLifeOver", 1113: "markerDeveloperAlmostEmpty", 1114: "markerDeveloperEmpty",
    1115: "markerTonerCartridgeMissing",
    1301: "mediaPathMediaTrayMissing", 1302: "mediaPathMediaTrayAlmostFull",
    1303: "mediaPathMediaTrayFull", 1304: "mediaPathCannotDuplexMediaSelected",
}
